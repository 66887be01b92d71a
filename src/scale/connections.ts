/**
 * Redis connections and the names every role agrees on. BullMQ's rules: a connection that blocks
 * (workers, QueueEvents) has `maxRetriesPerRequest: null` so a Redis restart does not throw out of
 * its loop; a producer (the gateways' and the web's Queue) has `enableOfflineQueue: false`, so
 * while Redis is down an add fails at once and the person is told "busy, try again" instead of
 * waiting on a command buffered in memory. Redis itself must run with `appendonly yes` (jobs and
 * their records survive a Redis restart) and `maxmemory-policy noeviction` (BullMQ's keys must
 * never be evicted): README "Scaling".
 */
import { Redis } from 'ioredis';

export const CLASSIFY_QUEUE = 'catdog-classify';
export const JOBS_QUEUE = 'catdog-jobs';
/** Model registry operations asked by the gateways, run by the jobs worker where the registry is (src/scale/models.ts). */
export const MODELS_QUEUE = 'catdog-models';
/** The published head: `catdog:head` holds {id, file}; `catdog:head` is also the channel that says it changed. */
export const HEAD_KEY = 'catdog:head';
export const HEAD_CHANNEL = 'catdog:head';
/** Per inference worker: what it answers with, refreshed every few seconds (expires when it dies). */
export const WORKER_KEY_PREFIX = 'catdog:inference:';
/** Per jobs worker: whether it can read its training data, refreshed every few seconds (expires when it dies). */
export const JOBS_WORKER_KEY_PREFIX = 'catdog:jobs-worker:';

export function blockingConnection(url: string): Redis {
  const r = new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, retryStrategy: (n) => Math.min(200 * n, 2000) });
  r.on('error', () => undefined); // ioredis reconnects; BullMQ reports what fails
  return r;
}

export function producerConnection(url: string): Redis {
  const r = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, retryStrategy: (n) => Math.min(200 * n, 2000) });
  r.on('error', () => undefined);
  return r;
}

/** Resolves once `r` is connected (or rejects after `timeoutMs`). */
export async function connected(r: Redis, timeoutMs = 10_000): Promise<void> {
  if (r.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      r.off('ready', onReady);
      reject(new Error(`Redis did not answer within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    r.once('ready', onReady);
  });
}
