/**
 * INFERENCE_PROCESSES: one inference role (a real process, as `npm run start:inference` runs it,
 * with the REAL ResNet50) starts that many model processes, each its own BullMQ worker with
 * floor(cores / processes) ONNX Runtime threads, and stops them all on SIGTERM.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { threadsPerProcess } from '../../src/config.ts';
import { CLASSIFY_QUEUE, WORKER_KEY_PREFIX } from '../../src/scale/connections.ts';
import { freePort, redisServerBin, runTs, startRedis, stopProcess, type Proc } from '../helpers/processes.ts';
import { temporaryModelsDir } from '../helpers/training-photos.ts';

let root: string;
let redis: ChildProcess | null = null;
let url: string;
let role: Proc | null = null;
let inspect: Redis;
let queue: Queue;

beforeAll(async () => {
  if (!redisServerBin) return;
  root = mkdtempSync(join(tmpdir(), 'catdog-inference-processes-'));
  temporaryModelsDir(root);
  mkdirSync(join(root, 'redis'));
  const port = await freePort();
  redis = await startRedis(port, join(root, 'redis'));
  url = `redis://127.0.0.1:${port}`;
  inspect = new Redis(url, { maxRetriesPerRequest: null });
  inspect.on('error', () => undefined);
  const connection = new Redis(url, { maxRetriesPerRequest: null });
  connection.on('error', () => undefined);
  queue = new Queue(CLASSIFY_QUEUE, { connection });
  queue.on('error', () => undefined);
}, 60_000);

afterAll(async () => {
  if (role) await stopProcess(role.proc, 'SIGKILL');
  await queue?.close().catch(() => undefined);
  inspect?.disconnect();
  if (redis) await stopProcess(redis);
  if (root) rmSync(root, { recursive: true, force: true });
}, 60_000);

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe.skipIf(!redisServerBin)('INFERENCE_PROCESSES', () => {
  it('the inference role starts that many model processes, each a worker with floor(cores / processes) threads, and stops them all', { timeout: 300_000 }, async () => {
    const threads = threadsPerProcess(availableParallelism(), 2);
    role = runTs(
      'src/scale/start.ts',
      ['inference'],
      { REDIS_URL: url, DATA_DIR: join(root, 'data'), CATDOG_MODELS_DIR: join(root, 'models'), INFERENCE_PROCESSES: '2' },
      root,
    );
    await role.line(/catdog inference is ready/, 240_000);
    const loaded = role.out.filter((l) => /model process pid \d+ loaded/.test(l));
    expect(loaded).toHaveLength(2);
    for (const l of loaded) expect(l).toContain(`, ${threads} thread(s))`);
    const pids = loaded.map((l) => Number(/pid (\d+)/.exec(l)![1]));
    expect(new Set(pids).size).toBe(2);
    expect((await queue.getWorkers()).length).toBe(2);
    const keys = await inspect.keys(`${WORKER_KEY_PREFIX}*`);
    const beats = (await inspect.mget(...keys)).map((v) => JSON.parse(v!));
    expect(beats.map((b) => b.threads)).toEqual([threads, threads]);
    expect(new Set(beats.map((b) => b.name)).size).toBe(2);

    role.proc.kill('SIGTERM');
    expect(await role.exit).toBe(0);
    role = null;
    const t0 = Date.now();
    while (pids.some(alive) && Date.now() - t0 < 15_000) await new Promise((r) => setTimeout(r, 100));
    expect(pids.filter(alive)).toEqual([]);
    expect(await inspect.keys(`${WORKER_KEY_PREFIX}*`)).toEqual([]);
  });
});
