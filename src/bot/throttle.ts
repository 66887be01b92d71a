/**
 * Rate-limited delivery of the latest value: at most one send per `intervalMs` (measured between
 * the starts of two sends), one send at a time, and values that arrive in between collapse into
 * the newest. The final value is always delivered, after the interval has passed too.
 */
export class Throttle<T> {
  private last = -Infinity;
  private pending: { value: T } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private inflight: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly intervalMs: number,
    private readonly send: (value: T) => Promise<void>,
    private readonly onError: (err: unknown) => void = () => {},
    private readonly now: () => number = () => performance.now(),
  ) {}

  push(value: T): void {
    if (this.closed) return;
    this.pending = { value };
    this.schedule();
  }

  /** Stops taking values, then sends `value` once the interval since the last send has passed. */
  async final(value: T): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.pending = null;
    await this.inflight;
    const wait = this.last + this.intervalMs - this.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    this.last = this.now();
    await this.send(value);
  }

  private schedule(): void {
    if (this.timer || this.closed) return;
    const wait = Math.max(0, this.last + this.intervalMs - this.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.fire();
    }, wait);
  }

  private async fire(): Promise<void> {
    await this.inflight;
    if (!this.pending || this.closed) return;
    const wait = this.last + this.intervalMs - this.now();
    if (wait > 0) return this.schedule();
    const { value } = this.pending;
    this.pending = null;
    this.last = this.now();
    this.inflight = this.send(value).catch(this.onError);
    await this.inflight;
    if (this.pending) this.schedule();
  }
}
