/**
 * The one bounded queue in front of the classifier, shared by every door (bot and web): a global
 * concurrency cap, a per-key cap (a guild, or a web client) so one busy server cannot take every
 * slot, and a fixed number of waiting places. When they are all taken the answer is Busy at once,
 * never a hang. Plus the in-flight gate used for a graceful shutdown.
 */
import { Busy, ShuttingDown } from './errors.ts';
import type { ImageClassifier, Prediction } from './model/types.ts';

export interface QueueOptions {
  /** Jobs that may wait (not counting those running). 0: run at once or refuse. */
  size: number;
  /** Jobs running at once. */
  concurrency: number;
  /** Jobs of one key running at once. */
  perKey: number;
}

export interface QueueStats {
  waiting: number;
  running: number;
  size: number;
  concurrency: number;
}

interface Waiting {
  key: string;
  start: () => void;
}

export class ClassifyQueue {
  private readonly waiting: Waiting[] = [];
  private readonly runningByKey = new Map<string, number>();
  private running = 0;
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly options: QueueOptions) {
    if (options.concurrency < 1 || options.perKey < 1 || options.size < 0) {
      throw new RangeError(`invalid queue options ${JSON.stringify(options)}`);
    }
  }

  stats(): QueueStats {
    return { waiting: this.waiting.length, running: this.running, size: this.options.size, concurrency: this.options.concurrency };
  }

  /**
   * Runs `fn` when a slot is free for `key`. Throws Busy when the waiting places are all taken,
   * ShuttingDown after close(), and the signal's reason when it aborts while waiting.
   */
  async run<T>(key: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.closed) throw new ShuttingDown();
    signal?.throwIfAborted();
    if (!this.canStart(key)) {
      if (this.waiting.length >= this.options.size) throw new Busy();
      await new Promise<void>((resolve, reject) => {
        const entry: Waiting = {
          key,
          start: () => {
            signal?.removeEventListener('abort', onAbort);
            resolve();
          },
        };
        const onAbort = () => {
          const i = this.waiting.indexOf(entry);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(signal!.reason);
          this.checkIdle();
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        this.waiting.push(entry);
      });
    } else {
      this.take(key);
    }
    try {
      return await fn();
    } finally {
      this.release(key);
    }
  }

  /** True when a job for `key` submitted now would be refused as Busy. */
  wouldRefuse(key: string): boolean {
    return !this.canStart(key) && this.waiting.length >= this.options.size;
  }

  /** Takes no new work from now on; what waits or runs carries on. */
  close(): void {
    this.closed = true;
  }

  /** Resolves when nothing waits or runs. */
  idle(): Promise<void> {
    if (this.running === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private canStart(key: string): boolean {
    return this.running < this.options.concurrency && (this.runningByKey.get(key) ?? 0) < this.options.perKey;
  }

  private take(key: string): void {
    this.running++;
    this.runningByKey.set(key, (this.runningByKey.get(key) ?? 0) + 1);
  }

  private release(key: string): void {
    this.running--;
    const n = (this.runningByKey.get(key) ?? 1) - 1;
    if (n === 0) this.runningByKey.delete(key);
    else this.runningByKey.set(key, n);
    // Start the first waiting job whose key has room (a busy guild does not block the others).
    for (let i = 0; i < this.waiting.length && this.running < this.options.concurrency; ) {
      const w = this.waiting[i]!;
      if (this.canStart(w.key)) {
        this.waiting.splice(i, 1);
        this.take(w.key);
        w.start();
      } else {
        i++;
      }
    }
    this.checkIdle();
  }

  private checkIdle(): void {
    if (this.running === 0 && this.waiting.length === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}

/**
 * What the doors (bot, web) call to classify: this process's queue in front of the classifier
 * (QueuedClassifier), or, distributed, the BullMQ queue in front of the inference workers
 * (src/scale/remote.ts).
 */
export interface ClassifyDoor {
  classify(bytes: Uint8Array, options: { key: string; signal?: AbortSignal }): Promise<Prediction>;
  /** True when a photo for `key` submitted now would be refused as Busy (asked before downloading it). */
  wouldRefuse(key: string): boolean | Promise<boolean>;
  stats(): QueueStats | Promise<QueueStats>;
}

/** The classifier behind the queue: what the doors call. */
export class QueuedClassifier implements ClassifyDoor {
  constructor(
    readonly classifier: ImageClassifier,
    readonly queue: ClassifyQueue,
  ) {}

  wouldRefuse(key: string): boolean {
    return this.queue.wouldRefuse(key);
  }

  stats(): QueueStats {
    return this.queue.stats();
  }

  classify(bytes: Uint8Array, options: { key: string; signal?: AbortSignal }): Promise<Prediction> {
    return this.queue.run(options.key, () => this.classifier.classify(bytes, { signal: options.signal }), options.signal);
  }
}

/**
 * Counts work in flight across a door's whole request (download, queue, classify, answer), so a
 * shutdown can wait for the answers to go out, not only for the classifier to finish.
 */
export class WorkGate {
  private active = 0;
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  get isClosed(): boolean {
    return this.closed;
  }

  get inFlight(): number {
    return this.active;
  }

  /** Starts a unit of work; throws ShuttingDown once closed. Call the returned function when done. */
  enter(): () => void {
    if (this.closed) throw new ShuttingDown();
    this.active++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.active--;
      if (this.active === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
    };
  }

  /** Takes no new work; resolves when the work in flight has finished. */
  close(): Promise<void> {
    this.closed = true;
    if (this.active === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }
}
