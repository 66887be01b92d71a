/**
 * The one bounded queue in front of the classifier, shared by every door (bot and web), and the
 * one place where work is admitted. A request is admitted (a Ticket: a place in the queue) BEFORE
 * any byte of its photo is downloaded or read, or it is refused at once (Busy), never after the
 * bytes arrived. Places: `concurrency` running plus `size` waiting in all; one key (a guild, or a
 * web client) holds at most `perKey` running and `perKeyWaiting` more, so one busy server cannot
 * take every waiting place. A ticket waits for a running slot only once its bytes are there
 * (run()); keys with room start first. Plus, for the bot, a cap on photos downloaded or held at
 * once (QueuedClassifier.classifyFetched), and the in-flight gate used for a graceful shutdown.
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
  /** Jobs of one key waiting at once (default: all of `size`). */
  perKeyWaiting?: number;
}

export interface QueueStats {
  waiting: number;
  running: number;
  size: number;
  concurrency: number;
}

interface Ready {
  key: string;
  start: () => void;
}

/** An admitted request: a place held in the queue until it has run (or is released). */
export interface Ticket {
  readonly key: string;
  /** Waits for a running slot, runs `fn`, frees the place. Once per ticket. */
  run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T>;
  /** Frees the place without running (the download failed…). Safe to call more than once. */
  release(): void;
}

export class ClassifyQueue {
  private readonly ready: Ready[] = [];
  private readonly runningByKey = new Map<string, number>();
  private readonly heldByKey = new Map<string, number>();
  private running = 0;
  /** Admitted and not running yet (fetching their bytes, or ready and waiting). */
  private held = 0;
  private closed = false;
  private idleWaiters: (() => void)[] = [];
  private readonly perKeyWaiting: number;

  constructor(private readonly options: QueueOptions) {
    if (options.concurrency < 1 || options.perKey < 1 || options.size < 0 || (options.perKeyWaiting ?? 0) < 0) {
      throw new RangeError(`invalid queue options ${JSON.stringify(options)}`);
    }
    this.perKeyWaiting = options.perKeyWaiting ?? options.size;
  }

  stats(): QueueStats {
    return { waiting: this.held, running: this.running, size: this.options.size, concurrency: this.options.concurrency };
  }

  /** True when a request for `key` submitted now would be refused as Busy (or the queue is closed). */
  wouldRefuse(key: string): boolean {
    if (this.closed) return true;
    const { concurrency, size, perKey } = this.options;
    if (this.running + this.held >= concurrency + size) return true;
    return count(this.runningByKey, key) + count(this.heldByKey, key) >= perKey + this.perKeyWaiting;
  }

  /** Takes a place for `key` now, or throws Busy (full, or this key holds its share) / ShuttingDown. */
  admit(key: string): Ticket {
    if (this.closed) throw new ShuttingDown();
    if (this.wouldRefuse(key)) throw new Busy();
    this.held++;
    bump(this.heldByKey, key, 1);
    let state: 'held' | 'running' | 'done' = 'held';
    const unhold = () => {
      this.held--;
      bump(this.heldByKey, key, -1);
    };
    const release = () => {
      if (state !== 'held') return;
      state = 'done';
      unhold();
      this.checkIdle();
    };
    const run = async <T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> => {
      if (state !== 'held') throw new Error('a queue ticket runs once');
      try {
        signal?.throwIfAborted();
        if (!this.canStart(key)) {
          await new Promise<void>((resolve, reject) => {
            const entry: Ready = {
              key,
              start: () => {
                signal?.removeEventListener('abort', onAbort);
                resolve();
              },
            };
            const onAbort = () => {
              const i = this.ready.indexOf(entry);
              if (i >= 0) this.ready.splice(i, 1);
              reject(signal!.reason);
            };
            signal?.addEventListener('abort', onAbort, { once: true });
            this.ready.push(entry);
          });
        } else {
          this.take(key);
        }
      } catch (err) {
        release();
        throw err;
      }
      // take() ran (directly or through release() of another job): the place becomes a running slot.
      state = 'running';
      unhold();
      try {
        return await fn();
      } finally {
        state = 'done';
        this.finish(key);
      }
    };
    return { key, run, release };
  }

  /**
   * Runs `fn` when a slot is free for `key`. Throws Busy when the places are all taken,
   * ShuttingDown after close(), and the signal's reason when it aborts while waiting.
   */
  run<T>(key: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    try {
      signal?.throwIfAborted();
      return this.admit(key).run(fn, signal);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Takes no new work from now on; what waits or runs carries on. */
  close(): void {
    this.closed = true;
  }

  /** Resolves when nothing waits or runs. */
  idle(): Promise<void> {
    if (this.running === 0 && this.held === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private canStart(key: string): boolean {
    return this.running < this.options.concurrency && count(this.runningByKey, key) < this.options.perKey;
  }

  private take(key: string): void {
    this.running++;
    bump(this.runningByKey, key, 1);
  }

  private finish(key: string): void {
    this.running--;
    bump(this.runningByKey, key, -1);
    // Start the first ready job whose key has room (a busy guild does not block the others).
    for (let i = 0; i < this.ready.length && this.running < this.options.concurrency; ) {
      const w = this.ready[i]!;
      if (this.canStart(w.key)) {
        this.ready.splice(i, 1);
        this.take(w.key);
        w.start();
      } else {
        i++;
      }
    }
    this.checkIdle();
  }

  private checkIdle(): void {
    if (this.running === 0 && this.held === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}

/** A place held for one photo before its bytes are read or downloaded; run it once, or release it. */
export interface Admission {
  run(bytes: Uint8Array, signal?: AbortSignal): Promise<Prediction>;
  /** Frees the place without running (the upload or download failed…). Safe to call more than once. */
  release(): void;
}

/**
 * What the doors (bot, web) call to classify: this process's queue in front of the classifier
 * (QueuedClassifier), or, distributed, the BullMQ queue in front of the inference workers
 * (src/scale/remote.ts).
 */
export interface ClassifyDoor {
  classify(bytes: Uint8Array, options: { key: string; signal?: AbortSignal }): Promise<Prediction>;
  /** Takes a place for `key` before any byte is read: Busy (or ShuttingDown) at once when there is none. */
  admit(key: string): Admission | Promise<Admission>;
  /** Admits first, then fetches the bytes and classifies them: nothing is downloaded for a refused photo. */
  classifyFetched(fetch: () => Promise<Uint8Array>, options: { key: string; signal?: AbortSignal }): Promise<Prediction>;
  /** True when a photo for `key` submitted now would be refused as Busy (asked before downloading it). */
  wouldRefuse(key: string): boolean | Promise<boolean>;
  stats(): QueueStats | Promise<QueueStats>;
}

function count(map: Map<string, number>, key: string): number {
  return map.get(key) ?? 0;
}

function bump(map: Map<string, number>, key: string, by: number): void {
  const n = count(map, key) + by;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}

/** At most `limit` holders at once; the others wait in order. */
export class Semaphore {
  private active = 0;
  private readonly waiters: (() => void)[] = [];

  constructor(private readonly limit: number) {
    if (limit < 1) throw new RangeError(`invalid semaphore limit ${limit}`);
  }

  get inUse(): number {
    return this.active;
  }

  /** Resolves with a release function once a permit is free; rejects with the signal's reason when it aborts first. */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.active < this.limit) {
      this.active++;
    } else {
      await new Promise<void>((resolve, reject) => {
        const go = () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        const onAbort = () => {
          const i = this.waiters.indexOf(go);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(signal!.reason);
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        this.waiters.push(go);
      });
    }
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiters.shift();
      if (next) next(); // the permit passes on
      else this.active--;
    };
  }
}

/** The classifier behind the queue: what the doors call. */
export class QueuedClassifier implements ClassifyDoor {
  /** Photos the bot downloads, or holds downloaded until they are classified, at once. */
  readonly downloads: Semaphore;

  constructor(
    readonly classifier: ImageClassifier,
    readonly queue: ClassifyQueue,
    options: { downloads?: number } = {},
  ) {
    this.downloads = new Semaphore(options.downloads ?? 4);
  }

  wouldRefuse(key: string): boolean {
    return this.queue.wouldRefuse(key);
  }

  stats(): QueueStats {
    return this.queue.stats();
  }

  classify(bytes: Uint8Array, options: { key: string; signal?: AbortSignal }): Promise<Prediction> {
    return this.queue.run(options.key, () => this.classifier.classify(bytes, { signal: options.signal }), options.signal);
  }

  admit(key: string): Admission {
    const ticket = this.queue.admit(key);
    return {
      run: (bytes, signal) => ticket.run(() => this.classifier.classify(bytes, { signal }), signal),
      release: () => ticket.release(),
    };
  }

  /**
   * Admits the request first (Busy at once when there is no place for `key`: nothing is fetched),
   * then takes a download permit, fetches the bytes and classifies them. The permit is held until
   * the photo is classified, so at most `downloads` photos are in memory for the bot at once.
   */
  async classifyFetched(fetch: () => Promise<Uint8Array>, options: { key: string; signal?: AbortSignal }): Promise<Prediction> {
    const admission = this.admit(options.key);
    let releasePermit: (() => void) | null = null;
    try {
      releasePermit = await this.downloads.acquire(options.signal);
      const bytes = await fetch();
      return await admission.run(bytes, options.signal);
    } finally {
      admission.release();
      releasePermit?.();
    }
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
