/**
 * Model operations asked by a gateway run where the registry lives, the jobs worker, as jobs on
 * `catdog-models` (src/scale/models.ts): the asking side holds no registry at all. Our own
 * redis-server; the registry a temporary copy of the shipped one (its active model and the one before it).
 */
import type { ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registry } from '../../src/model/registry.ts';
import { HEAD_KEY, WORKER_KEY_PREFIX } from '../../src/scale/connections.ts';
import { RedisLiveHead } from '../../src/scale/heads.ts';
import { QueuedModels, startModelsWorker } from '../../src/scale/models.ts';
import { freePort, redisServerBin, startRedis, stopProcess } from '../helpers/processes.ts';
import { repoRoot } from '../helpers/shared.ts';

let root: string;
let redisServer: ChildProcess | null = null;
let url: string;
let redis: Redis;
let registry: Registry;
let worker: { close(): Promise<void> } | null = null;
let models: QueuedModels;
const logs: string[] = [];
const shipped = new Registry(join(repoRoot, 'models', 'registry')).readActiveState();
const newer = shipped.active!;
/** The latest shipped model trained on fp32 features, while the active one (and the backbones) are int8. */
let fp32Older: string;
/** An earlier model the int8 backbones can answer with: the active head with another bias. */
let older: string;

beforeAll(async () => {
  if (!redisServerBin) return;
  root = mkdtempSync(join(tmpdir(), 'catdog-models-queue-'));
  cpSync(join(repoRoot, 'models', 'registry'), join(root, 'registry'), { recursive: true });
  registry = new Registry(join(root, 'registry'));
  for (const id of [...shipped.history].reverse()) {
    if ((await registry.loadModel(id)).precision === 'fp32') {
      fp32Older = id;
      break;
    }
  }
  const active = (await registry.loadModel(newer)).file;
  older = await registry.addModel({ ...active, bias: active.bias + 0.5 });
  // The shipped active model with exactly one earlier one, however long the shipped history is.
  writeFileSync(join(root, 'registry', 'active.json'), JSON.stringify({ active: newer, history: [older] }, null, 2));
  mkdirSync(join(root, 'redis'));
  const port = await freePort();
  redisServer = await startRedis(port, join(root, 'redis'));
  url = `redis://127.0.0.1:${port}`;
  redis = new Redis(url, { maxRetriesPerRequest: null });
  redis.on('error', () => undefined);
  worker = await startModelsWorker({ redisUrl: url, redis, registry, live: new RedisLiveHead(redis), log: (l) => logs.push(l) });
  models = await QueuedModels.open(url);
}, 60_000);

afterAll(async () => {
  await worker?.close();
  await models?.close();
  redis?.disconnect();
  if (redisServer) await stopProcess(redisServer);
  if (root) rmSync(root, { recursive: true, force: true });
}, 60_000);

const published = async () => JSON.parse((await redis.get(HEAD_KEY))!).id as string;

describe.skipIf(!redisServerBin)('model operations on the jobs worker, through catdog-models', { timeout: 60_000 }, () => {
  it('at startup the registry holder publishes the active head; show and list answer from its registry', async () => {
    expect(older).toMatch(/^m-/);
    expect(await published()).toBe(newer);
    const active = await models.active();
    expect(active).toMatchObject({ registry: { id: newer, active: true }, live: newer, previous: older, workers: [] });
    expect((await models.list()).map((m) => [m.id, m.active])).toEqual((await registry.listModels()).map((m) => [m.id, m.active]).reverse());
  });

  it('rollback and promote change the registry there and publish the head; errors keep their code', async () => {
    expect(await models.rollback()).toEqual({ from: newer, to: older });
    expect(registry.readActiveState().active).toBe(older);
    expect(await published()).toBe(older);
    await expect(models.rollback()).rejects.toMatchObject({ code: 'no_rollback' });

    expect(await models.promote(newer)).toEqual({ previous: older });
    expect(registry.readActiveState().active).toBe(newer);
    expect(await published()).toBe(newer);
  });

  it('a head trained on other precisions than the backbones run is refused there, before the registry changes', async () => {
    expect((await registry.loadModel(fp32Older)).precision).toBe('fp32');
    const before = registry.readActiveState();
    await expect(models.promote(fp32Older)).rejects.toMatchObject({ code: 'head_precision', message: expect.stringMatching(/trained on fp32 backbone features, but the backbones run in int8/) });
    expect(registry.readActiveState()).toEqual(before);
    expect(await published()).toBe(newer);
  });

  it('discard deletes a candidate there; the active model cannot be discarded', async () => {
    const candidate = await registry.addModel((await registry.loadModel(older)).file);
    expect((await registry.listModels()).some((m) => m.id === candidate)).toBe(true);
    await models.discard(candidate);
    expect((await registry.listModels()).some((m) => m.id === candidate)).toBe(false);
    await expect(models.discard(newer)).rejects.toMatchObject({ code: 'model_active' });
    expect(registry.readActiveState().active).toBe(newer);
  });

  it("with no inference worker alive and no head published, a promotion is checked against the jobs worker's own backbones", async () => {
    await worker!.close();
    const own = (await registry.loadModel(older)).file.backbones;
    worker = await startModelsWorker({ redisUrl: url, redis, registry, live: new RedisLiveHead(redis, { fallback: () => own }), log: (l) => logs.push(l) });
    await redis.del(HEAD_KEY);
    expect(await redis.keys(`${WORKER_KEY_PREFIX}*`)).toEqual([]);
    expect(await models.promote(older)).toEqual({ previous: newer });
    expect(registry.readActiveState().active).toBe(older);
    expect(await published()).toBe(older);
    expect(await models.promote(newer)).toEqual({ previous: older });
    expect(await published()).toBe(newer);
  });

  it('with no jobs worker alive, the asker is told to try again within its deadline, and nothing is left queued', async () => {
    await worker!.close();
    worker = null;
    const impatient = await QueuedModels.open(url, { deadlineMs: 1000 });
    try {
      await expect(impatient.rollback()).rejects.toMatchObject({
        code: 'busy',
        message: expect.stringMatching(/^No jobs worker answered within 1 s, and the model registry is kept by the jobs worker \(CATDOG_ROLE=jobs\)/),
      });
    } finally {
      await impatient.close();
    }
    expect(registry.readActiveState().active).toBe(newer);
    expect(await redis.llen('bull:catdog-models:wait')).toBe(0);
  });
});
