/** The store's contract: SQLite always, Redis too when a redis-server binary is on PATH. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoreConfig } from '../../src/config.ts';
import { Store } from '../../src/store/index.ts';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'catdog-parts-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The store's behaviour, the same on every backend. */
function storeContract(name: string, config: () => StoreConfig | null) {
  describe(`store (${name})`, () => {
    it('keeps settings, channel overrides, stats and rate-limit buckets, across a reopen', async () => {
      const cfg = config();
      if (!cfg) return;
      const g = `g${Date.now()}`;
      let store = await Store.open(cfg);
      try {
        expect(await store.settings.autoDetect(g, 'c1')).toEqual({ enabled: false, style: 'reply' });
        await store.settings.updateGuild(g, { autoDetect: true });
        await store.settings.setChannel('c2', { autoDetect: false });
        await store.settings.updateGuild(g, { style: 'react' });
        expect(await store.settings.autoDetect(g, 'c1')).toEqual({ enabled: true, style: 'react' });
        expect(await store.settings.autoDetect(g, 'c2')).toEqual({ enabled: false, style: 'react' });
        // Concurrent increments are not lost.
        await Promise.all(['dog', 'dog', 'cat', 'dog', 'neither'].map((l) => store.stats.record(g, l as 'dog')));
      } finally {
        await store.close();
      }
      store = await Store.open(cfg);
      try {
        expect(await store.stats.get(g)).toEqual({ total: 5, dog: 3, cat: 1, neither: 1 });
        expect(await store.settings.guild(g)).toEqual({ autoDetect: true, style: 'react' });
        await store.settings.setChannel('c2', { autoDetect: null });
        expect(await store.settings.autoDetect(g, 'c2')).toEqual({ enabled: true, style: 'react' });

        // The per-user bucket (2 in a row, one more every 30 s), kept in the store.
        const u = `u${Date.now()}`;
        const t0 = Date.now();
        const bucket = store.rateLimiter({ burst: 2, refillMs: 30_000 }, 'rate:test:');
        expect(await bucket.take(u, t0)).toEqual({ allowed: true });
        expect(await bucket.take(u, t0 + 1)).toEqual({ allowed: true });
        expect(await bucket.take(u, t0 + 1000)).toEqual({ allowed: false, retryAfterMs: 29_000 });
        expect(await bucket.take(u, t0 + 2000)).toEqual({ allowed: false, retryAfterMs: 28_000 });
        expect(await bucket.take(u, t0 + 30_001)).toEqual({ allowed: true });
        expect(await bucket.take(`${u}-other`, t0 + 30_001)).toEqual({ allowed: true });
      } finally {
        await store.close();
      }
    });
  });
}

storeContract('SQLite', () => {
  const path = join(tmp, 'contract.sqlite');
  return { kind: 'sqlite', url: `sqlite://${path}`, path };
});

let redis: ChildProcess | null = null;
let redisUrl: string | null = null;
const redisBin = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).stdout.trim();
describe.skipIf(!redisBin)('with a local redis-server', () => {
  beforeAll(async () => {
    // A free loopback port: bind, read it, release, hand it to redis.
    const probe = createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    redis = spawn(redisBin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let seen = '';
    await new Promise<void>((resolveReady, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${seen}`)), 15_000);
      redis!.stdout!.on('data', (d: Buffer) => {
        seen += d.toString();
        if (/Ready to accept connections/.test(seen)) {
          clearTimeout(timer);
          resolveReady();
        }
      });
    });
    redisUrl = `redis://127.0.0.1:${port}`;
  });
  afterAll(() => {
    redis?.kill('SIGTERM');
  });
  storeContract('Redis', () => (redisUrl ? { kind: 'redis', url: redisUrl } : null));
});
if (!redisBin) console.warn('skipping the Redis store test: no redis-server on PATH (apt-get install -y redis-server)');
