/**
 * State shared by several processes is atomic in Redis: two Store instances (two processes'
 * worth of connections) on one redis-server race for job ids, a cooldown window and counters.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { RemoteClassifier } from '../../src/scale/remote.ts';
import { Store } from '../../src/store/index.ts';
import { newJobRecord } from '../../src/jobs/types.ts';
import { freePort, redisServerBin, startRedis, stopProcess } from '../helpers/processes.ts';

let redis: ChildProcess | null = null;
let dir: string;
let a: Store;
let b: Store;
let url: string;

beforeAll(async () => {
  if (!redisServerBin) return;
  dir = mkdtempSync(join(tmpdir(), 'catdog-redis-state-'));
  const port = await freePort();
  redis = await startRedis(port, dir);
  url = `redis://127.0.0.1:${port}`;
  a = await Store.open({ kind: 'redis', url });
  b = await Store.open({ kind: 'redis', url });
});

afterAll(async () => {
  await a?.close();
  await b?.close();
  if (redis) await stopProcess(redis);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const record = (name: string) => newJobRecord({ kind: 'retrain', sources: [] }, { id: '1', name });

describe.skipIf(!redisServerBin)('Redis state across processes', () => {
  it('hands out distinct job ids (INCR) and loses no concurrent record update', async () => {
    const made = await Promise.all(Array.from({ length: 20 }, (_, k) => (k % 2 ? a : b).jobs.create(record(`u${k}`))));
    expect(new Set(made.map((r) => r.id)).size).toBe(20);
    expect(made.map((r) => Number(r.id)).sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, k) => k + 1));
    const id = made[0]!.id;
    await Promise.all(Array.from({ length: 10 }, (_, k) => (k % 2 ? a : b).jobs.update(id, (r) => ({ attempts: r.attempts + 1 }))));
    expect((await a.jobs.get(id))!.attempts).toBe(10);
    expect((await b.jobs.recent(3)).map((r) => r.id)).toEqual(['20', '19', '18']);
  });

  it('shares one token bucket per user between racing gateways: a burst of 2 lets exactly 2 of 6 through', async () => {
    const now = Date.now();
    const buckets = [a, b].map((s) => s.rateLimiter({ burst: 2, refillMs: 60_000 }, 'rate:test:'));
    const takes = await Promise.all(Array.from({ length: 6 }, (_, k) => buckets[k % 2]!.take('racer', now)));
    expect(takes.filter((t) => t.allowed)).toHaveLength(2);
    for (const t of takes.filter((t) => !t.allowed)) expect((t as { retryAfterMs: number }).retryAfterMs).toBe(60_000);
    // Half a refill later the bucket holds half a token: still refused, and told when to come back.
    const later = await buckets[1]!.take('racer', now + 30_000);
    expect(later).toEqual({ allowed: false, retryAfterMs: 30_000 });
    expect(await buckets[0]!.take('racer', now + 60_000)).toEqual({ allowed: true });
  });

  it('counts every verdict from both', async () => {
    await Promise.all(Array.from({ length: 12 }, (_, k) => (k % 2 ? a : b).stats.record('g1', k % 3 === 0 ? 'cat' : 'dog')));
    expect(await a.stats.get('g1')).toEqual({ total: 12, dog: 8, cat: 4, neither: 0 });
  });

  it('the door refuses "busy" before downloading: past QUEUE_SIZE waiting photos, or past a server\'s fair share while others wait; no worker in time is "busy" too', async () => {
    const remote = await RemoteClassifier.open({ redisUrl: url, size: 6, deadlineMs: 1000 });
    try {
      const add = (key: string) => remote.queue.add('classify', { bytes: '', key }, { jobId: `${Buffer.from(key).toString('base64url')}.${randomUUID()}` });
      for (let k = 0; k < 3; k++) await add('guild-1');
      expect(await remote.wouldRefuse('guild-1')).toBe(false); // alone, a server may take every place
      await add('guild-2');
      expect(await remote.wouldRefuse('guild-1')).toBe(true); // 3 of 6 with two servers waiting: its share
      expect(await remote.wouldRefuse('guild-2')).toBe(false);
      expect(await remote.wouldRefuse('guild-3')).toBe(false);
      await add('guild-2');
      await add('guild-3');
      expect(await remote.wouldRefuse('guild-4')).toBe(true); // all 6 places taken
      await remote.queue.obliterate({ force: true });
      // Nobody takes the photo: "busy", after the deadline, and the photo is not left in Redis.
      const err = await remote.classify(new Uint8Array([1, 2, 3]), { key: 'guild-1' }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'busy', message: 'No model worker answered within 1 s. Please try again in a moment.' });
      expect(await remote.queue.getJobCounts('wait', 'active')).toEqual({ wait: 0, active: 0 });
    } finally {
      await remote.close();
    }
  });
});
