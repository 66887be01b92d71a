/**
 * The doors' classifier when the model runs on inference workers (CATDOG_ROLE=gateway|web): a
 * photo becomes a BullMQ job on `catdog-classify`; the door waits for its result through
 * QueueEvents (with a deadline) and answers the person itself, exactly as in the embedded mode
 * (same words, same metrics, same stats). Why the door and not the worker posts the answer:
 * the web door needs the result back anyway, the interaction token and the "busy"/cooldown logic
 * live in the gateway, and a retried job (its worker killed) is answered once, by the one waiter.
 *
 * Busy, before anything is downloaded: the queue's waiting jobs (ids carry the server key)
 * against QUEUE_SIZE, and a server's fair share of the places when several servers wait.
 * The photo rides in the job and the job is deleted as soon as its answer is read.
 */
import { randomUUID } from 'node:crypto';
import { Queue, QueueEvents, type Job } from 'bullmq';
import { Busy, CatdogError } from '../errors.ts';
import type { Prediction } from '../model/types.ts';
import type { Admission, ClassifyDoor, QueueStats } from '../queue.ts';
import { blockingConnection, CLASSIFY_QUEUE, producerConnection } from './connections.ts';
import { fromWire, type WireError } from './wire.ts';

export interface ClassifyJobData {
  /** The photo, base64. */
  bytes: string;
  key: string;
}

export type ClassifyJobResult = { ok: true; prediction: Prediction; worker: string } | { ok: false; error: WireError; worker: string };

/** No inference worker answered within the deadline. */
export class NoWorkerAnswer extends CatdogError {
  constructor(seconds: number) {
    super('busy', `No model worker answered within ${seconds} s. Please try again in a moment.`);
  }
}

/** Redis is unreachable: the door cannot enqueue. */
export class QueueUnavailable extends CatdogError {
  constructor(cause: unknown) {
    super('busy', "I can't reach my work queue right now. Please try again in a moment.", { cause });
  }
}

export interface RemoteClassifierOptions {
  redisUrl: string;
  /** Waiting places (QUEUE_SIZE). */
  size: number;
  deadlineMs: number;
  /** Attempts per photo (a worker killed mid-request: the next one takes it over). */
  attempts?: number;
}

/** Key-safe form of a queue key (job ids may not contain ':'). */
function idKey(key: string): string {
  return Buffer.from(key).toString('base64url');
}

export class RemoteClassifier implements ClassifyDoor {
  readonly queue: Queue<ClassifyJobData, ClassifyJobResult>;
  readonly events: QueueEvents;

  private constructor(private readonly o: RemoteClassifierOptions) {
    this.queue = new Queue(CLASSIFY_QUEUE, { connection: producerConnection(o.redisUrl) });
    this.events = new QueueEvents(CLASSIFY_QUEUE, { connection: blockingConnection(o.redisUrl) });
    this.queue.on('error', () => undefined);
    this.events.on('error', () => undefined);
  }

  static async open(o: RemoteClassifierOptions): Promise<RemoteClassifier> {
    const r = new RemoteClassifier(o);
    await r.queue.waitUntilReady();
    await r.events.waitUntilReady();
    return r;
  }

  async wouldRefuse(key: string): Promise<boolean> {
    let ids: string[];
    try {
      ids = await this.queue.getRanges(['wait', 'prioritized'], 0, this.o.size);
    } catch (err) {
      throw new QueueUnavailable(err);
    }
    if (ids.length >= this.o.size) return true;
    const mine = idKey(key);
    const byKey = new Map<string, number>();
    for (const id of ids) {
      const k = id.split('.')[0]!;
      byKey.set(k, (byKey.get(k) ?? 0) + 1);
    }
    const servers = byKey.size + (byKey.has(mine) ? 0 : 1);
    // A fair share of the places when others wait too (alone, a server may take them all).
    const share = Math.max(1, Math.floor(this.o.size / servers));
    return servers > 1 && (byKey.get(mine) ?? 0) >= share;
  }

  /** Busy at once when the queue has no place for `key`; the place itself is the BullMQ job, added by run. */
  async admit(key: string): Promise<Admission> {
    if (await this.wouldRefuse(key)) throw new Busy();
    return { run: (bytes, signal) => this.classify(bytes, { key, signal }), release: () => undefined };
  }

  async classifyFetched(fetch: () => Promise<Uint8Array>, options: { key: string; signal?: AbortSignal }): Promise<Prediction> {
    const admission = await this.admit(options.key);
    return admission.run(await fetch(), options.signal);
  }

  async stats(): Promise<QueueStats> {
    const c = await this.queue.getJobCounts('wait', 'prioritized', 'active');
    return { waiting: (c.wait ?? 0) + (c.prioritized ?? 0), running: c.active ?? 0, size: this.o.size, concurrency: await this.queue.getWorkersCount() };
  }

  async classify(bytes: Uint8Array, options: { key: string; signal?: AbortSignal }): Promise<Prediction> {
    let job: Job<ClassifyJobData, ClassifyJobResult>;
    try {
      job = await this.queue.add(
        'classify',
        { bytes: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64'), key: options.key },
        {
          jobId: `${idKey(options.key)}.${randomUUID()}`,
          attempts: this.o.attempts ?? 3,
          backoff: { type: 'fixed', delay: 100 },
          // Kept a minute at most after it ends (the waiter deletes it as soon as it has read it).
          removeOnComplete: { age: 60 },
          removeOnFail: { age: 60 },
        },
      );
    } catch (err) {
      throw new QueueUnavailable(err);
    }
    {
      const result = (await job.waitUntilFinished(this.events, this.o.deadlineMs).catch(async (err: Error) => {
        if (/timed out before finishing/.test(err.message)) {
          await job.remove().catch(() => undefined); // still waiting: nobody will take it now
          throw new NoWorkerAnswer(Math.round(this.o.deadlineMs / 1000));
        }
        throw new CatdogError('inference_failed', `The model worker failed: ${err.message}`);
      })) as ClassifyJobResult;
      // Deleted without holding the answer back (one Redis round trip less on every photo's path).
      void job.remove().catch(() => undefined);
      if (!result.ok) throw fromWire(result.error);
      return result.prediction;
    }
  }

  async close(): Promise<void> {
    await this.events.close().catch(() => undefined);
    await this.queue.close().catch(() => undefined);
  }
}
