/**
 * SHARD_COUNT=auto: the gateway role asks GET /gateway/bot through the configured REST base
 * (DISCORD_API_URL, so here the fake Discord, never discord.com) and starts that many shard
 * processes. The gateway alone on our own redis-server: no inference worker is needed to log in.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { resolveShards } from '../../src/scale/shard-count.ts';
import { FakeDiscord, guildOnShard } from '../helpers/fake-discord.ts';
import { freePort, redisServerBin, runTs, startRedis, stopProcess, type Proc } from '../helpers/processes.ts';

let root: string;
let fake: FakeDiscord;
let redis: ChildProcess | null = null;
let env: Record<string, string>;
const started: Proc[] = [];

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'catdog-shards-'));
  fake = await FakeDiscord.start({ guilds: [guildOnShard(0, 'Zero'), guildOnShard(1, 'One')], heartbeatIntervalMs: 2000, recommendedShards: 2 });
  env = {
    DISCORD_TOKEN: fake.token,
    DISCORD_APP_ID: fake.appId,
    DISCORD_GUILD_ID: fake.guild(0).id,
    DISCORD_API_URL: fake.apiUrl,
    DATA_DIR: join(root, 'data'),
    CATDOG_MODELS_DIR: join(root, 'models'),
    CATDOG_REGISTRY_DIR: join(root, 'models', 'registry'),
    SHARD_COUNT: 'auto',
    SHARD_SPAWN_DELAY_MS: '0',
  };
  if (!redisServerBin) return;
  mkdirSync(join(root, 'redis'));
  const port = await freePort();
  redis = await startRedis(port, join(root, 'redis'));
  env.REDIS_URL = `redis://127.0.0.1:${port}`;
}, 60_000);

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') for (const p of started) process.stderr.write(`--- pid ${p.proc.pid}\n${p.out.slice(-30).join('\n')}\n`);
});

afterAll(async () => {
  await Promise.all(started.map((p) => stopProcess(p.proc, 'SIGTERM', 15_000)));
  if (redis) await stopProcess(redis);
  await fake?.close();
  if (root) rmSync(root, { recursive: true, force: true });
}, 60_000);

const config = (extra: Record<string, string> = {}) => loadConfig({ ...env, REDIS_URL: 'redis://127.0.0.1:1', ...extra }, root);

describe('SHARD_COUNT=auto', () => {
  it("takes Discord's recommendation from GET /gateway/bot on the configured REST base", async () => {
    const before = fake.mark;
    const r = await resolveShards(config(), () => undefined);
    expect(r).toEqual({ total: 2, spawnDelayMs: 0, recommended: true });
    expect(fake.requests.filter((q) => q.seq >= before && q.method === 'GET' && q.path === '/gateway/bot')).toHaveLength(1);
  });

  it('a number is used as it is, without asking Discord', async () => {
    const before = fake.mark;
    expect(await resolveShards(config({ SHARD_COUNT: '3', SHARD_SPAWN_DELAY_MS: '5500' }), () => undefined)).toEqual({
      total: 3,
      spawnDelayMs: 5500,
      recommended: false,
    });
    expect(fake.requests.filter((q) => q.seq >= before)).toHaveLength(0);
  });

  it("spaces the shards' logins by Discord's max_concurrency (one login per bucket per 5 s)", async () => {
    fake.recommendedShards = 4;
    fake.sessionStartLimit.max_concurrency = 2;
    try {
      expect(await resolveShards(config({ SHARD_SPAWN_DELAY_MS: '5500' }), () => undefined)).toEqual({ total: 4, spawnDelayMs: 2750, recommended: true });
    } finally {
      fake.recommendedShards = 2;
      fake.sessionStartLimit.max_concurrency = 1;
    }
  });

  it('refuses to start when fewer session starts are left than shards to log in, saying when they come back', async () => {
    fake.sessionStartLimit.remaining = 1;
    fake.sessionStartLimit.reset_after = 3_600_000;
    try {
      await expect(resolveShards(config(), () => undefined)).rejects.toThrow(
        /Discord allows 1 more login\(s\) until the limit resets in 60 min, and SHARD_COUNT=auto needs 2 \(one per shard\)/,
      );
    } finally {
      fake.sessionStartLimit.remaining = 999;
      fake.sessionStartLimit.reset_after = 60_000;
    }
  });

  it.skipIf(!redisServerBin)('the gateway role starts the recommended number of shard processes, each logged in as shard i of 2', { timeout: 180_000 }, async () => {
    const p = runTs('src/scale/start.ts', ['gateway'], env, root);
    started.push(p);
    await p.line(/catdog gateway is ready/, 150_000);
    expect(p.out.some((l) => /gateway: Discord recommends 2 shard\(s\)/.test(l))).toBe(true);
    const t0 = Date.now();
    while (!(fake.connected && fake.identifies.length >= 2) && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 100));
    expect(fake.identifies.map((d) => d.shard).sort()).toEqual([
      [0, 2],
      [1, 2],
    ]);
    // Each shard process handles its own shard only.
    await p.line(/\[gateway shard .*0.*\] gateway: shard\(s\) 0 of 2/, 30_000);
    await p.line(/\[gateway shard .*1.*\] gateway: shard\(s\) 1 of 2/, 30_000);
  });

  // discord.js's own Client reads SHARD_COUNT from the environment: "auto" there stopped this gateway at startup.
  it.skipIf(!redisServerBin)('a recommendation of 1 shard runs the gateway in its one process, no ShardingManager, logged in as shard 0 of 1', { timeout: 180_000 }, async () => {
    // The gateway of the test above leaves first: one bot at a time on the fake.
    await Promise.all(started.splice(0).map((q) => stopProcess(q.proc, 'SIGTERM', 15_000)));
    fake.recommendedShards = 1;
    try {
      const from = fake.identifies.length;
      const p = runTs('src/scale/start.ts', ['gateway'], env, root);
      started.push(p);
      await p.line(/catdog gateway is ready/, 150_000);
      expect(p.out.some((l) => /gateway: Discord recommends 1 shard\(s\)/.test(l))).toBe(true);
      // The gateway itself, in this process: all shards, no shard processes.
      expect(p.out.some((l) => /gateway: all shards; photos go to/.test(l))).toBe(true);
      expect(p.out.some((l) => /shard process\(es\) up|\[gateway shard /.test(l))).toBe(false);
      const t0 = Date.now();
      while (!(fake.connected && fake.identifies.length > from) && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 100));
      expect(fake.identifies.slice(from).map((d) => d.shard)).toEqual([[0, 1]]);
    } finally {
      fake.recommendedShards = 2;
    }
  });
});
