/**
 * The distributed deployment on one machine, loopback only: our own redis-server (AOF,
 * noeviction) on a free port, the fake Discord with one guild on each of 2 shards, the gateway
 * (a ShardingManager with 2 shard processes), 2 inference workers (1 thread each) and 1 jobs
 * worker, each a real process started as `npm run start:<role>` would, with the REAL ResNet50.
 * The gateway is given a registry folder of its own: the model registry is the jobs worker's.
 *
 * Faults are made deterministic by stopping a worker's model process (SIGSTOP) so a photo is
 * provably in its hands, then killing the worker (SIGKILL). Every wait is bounded.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Registry } from '../../src/model/registry.ts';
import { CLASSIFY_QUEUE, WORKER_KEY_PREFIX } from '../../src/scale/connections.ts';
import { Store } from '../../src/store/index.ts';
import { FakeDiscord, guildOnShard, makeUser, type FakeGuild, type RecordedRequest } from '../helpers/fake-discord.ts';
import { freePort, redisServerBin, runTs, startRedis, stopProcess, type Proc } from '../helpers/processes.ts';
import { repoRoot, requireShared } from '../helpers/shared.ts';
import { copyPhotos, temporaryModelsDir, trainingNames } from '../helpers/training-photos.ts';

const trainZip = requireShared('data', 'dogs-vs-cats', 'train.zip');
const ready = Boolean(trainZip && redisServerBin);
if (!redisServerBin) console.warn('skipping the distributed test: no redis-server on PATH (apt-get install -y redis-server)');

const alice = makeUser('alice');

let root: string;
let fake: FakeDiscord;
let redis: ChildProcess | null = null;
let redisPort: number;
let redisDir: string;
let env: Record<string, string>;
let gateway: Proc;
let jobsWorker: Proc;
const inference: { p: Proc; modelPid: number; name: string }[] = [];
const everything: Proc[] = [];
let inspect: Redis;
let queue: Queue;
let store: Store;
let photos: Buffer[];
let registry: Registry;
const readActiveState = () => registry.readActiveState();
const gatewayRegistry = () => join(root, 'gateway-registry');

function start(role: string, extra: Record<string, string> = {}): Proc {
  const p = runTs('src/scale/start.ts', [role], { ...env, ...extra }, root);
  everything.push(p);
  return p;
}

async function startInference(): Promise<{ p: Proc; modelPid: number; name: string }> {
  const p = start('inference');
  const loaded = await p.line(/model process pid (\d+) loaded/, 90_000);
  const name = /inference: (\S+) takes photos/.exec(await p.line(/takes photos from/, 60_000))![1]!;
  return { p, modelPid: Number(/pid (\d+)/.exec(loaded)![1]), name };
}

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

let photoSeq = 0;
/** /catdog with a real photo in `guild`, by a new user each time. */
function askCatdog(guild: FakeGuild = fake.guild(0)) {
  const bytes = photos[photoSeq++ % photos.length]!;
  const att = fake.attachment(`photo${photoSeq}.jpg`, bytes, { contentType: 'image/jpeg', width: 300, height: 300 });
  const i = fake.slashCommand('catdog', {
    user: makeUser(`user${photoSeq}`),
    guild,
    channel: guild.channels[0],
    options: [{ name: 'image', type: 11, value: att.id }],
    attachments: [att],
  });
  return { i, att };
}

const isOriginalEdit = (token: string) => (r: RecordedRequest) =>
  r.method === 'PATCH' && r.path === `/webhooks/${fake.appId}/${token}/messages/@original` && r.status === 200;
const editsOf = (token: string) => fake.requests.filter(isOriginalEdit(token));
const answerOf = (token: string, timeoutMs = 60_000) => fake.waitForRequest(isOriginalEdit(token), { timeoutMs, what: `the answer to ${token}` });
const title = (r: RecordedRequest): string => r.body?.embeds?.[0]?.title ?? '';

/** The job message's edits by the jobs worker (PATCH /channels/{c}/messages/{m}). */
function channelEditsOf(messageId: string): RecordedRequest[] {
  return fake.requests.filter((r) => r.method === 'PATCH' && r.path.endsWith(`/messages/${messageId}`) && r.path.startsWith('/channels/') && r.status === 200);
}
function waitChannelEdit(messageId: string, pred: (r: RecordedRequest) => boolean, what: string, timeoutMs = 90_000): Promise<RecordedRequest> {
  return fake.waitForRequest(
    (r) => r.method === 'PATCH' && r.path.startsWith('/channels/') && r.path.endsWith(`/messages/${messageId}`) && r.status === 200 && pred(r),
    { timeoutMs, what },
  );
}

beforeAll(async () => {
  if (!ready) return;
  root = mkdtempSync(join(tmpdir(), 'catdog-scale-'));
  const models = temporaryModelsDir(root);
  // This process reads the same (temporary) registry as the roles.
  registry = new Registry(join(models, 'registry'));
  cpSync(join(repoRoot, 'models', 'registry'), join(models, 'registry'), { recursive: true });
  const trainDir = join(root, 'train');
  expect(await copyPhotos(trainZip!, trainDir, trainingNames(100, 130))).toBe(60);
  photos = readdirSync(trainDir)
    .slice(0, 12)
    .map((n) => readFileSync(join(trainDir, n)));
  redisDir = join(root, 'redis');
  mkdirSync(redisDir);
  redisPort = await freePort();
  redis = await startRedis(redisPort, redisDir);
  const url = `redis://127.0.0.1:${redisPort}`;
  inspect = new Redis(url, { maxRetriesPerRequest: null });
  inspect.on('error', () => undefined);
  const queueConnection = new Redis(url, { maxRetriesPerRequest: null });
  queueConnection.on('error', () => undefined);
  queue = new Queue(CLASSIFY_QUEUE, { connection: queueConnection });
  queue.on('error', () => undefined);
  store = await Store.open({ kind: 'redis', url });
  fake = await FakeDiscord.start({ guilds: [guildOnShard(0, 'Shard Zero Pets'), guildOnShard(1, 'Shard One Pets')], heartbeatIntervalMs: 2000 });
  env = {
    REDIS_URL: url,
    DISCORD_TOKEN: fake.token,
    DISCORD_APP_ID: fake.appId,
    DISCORD_GUILD_ID: fake.guild(0).id,
    DISCORD_API_URL: fake.apiUrl,
    ATTACHMENT_HOSTS: '127.0.0.1',
    DATA_DIR: join(root, 'data'),
    CATDOG_MODELS_DIR: models,
    CATDOG_REGISTRY_DIR: join(models, 'registry'),
    CATDOG_THREADS: '1',
    RATE_BURST: '0',
    ADMIN_USER_IDS: alice.id,
    TRAIN_DATA: trainDir,
    WORKER_LOCK_SECONDS: '2',
    JOB_PROGRESS_MS: '300',
    SHARD_COUNT: '2',
    SHARD_SPAWN_DELAY_MS: '0',
  };
  // Workers first (one at a time: two ResNet50 loads at once would only fight for 2 cores).
  inference.push(await startInference());
  inference.push(await startInference());
  jobsWorker = start('jobs');
  await jobsWorker.line(/catdog jobs is ready/, 90_000);
  // The gateway has a registry folder of its own that nobody writes: model operations run on the jobs worker.
  gateway = start('gateway', { CATDOG_REGISTRY_DIR: gatewayRegistry() });
  await gateway.line(/catdog gateway is ready/, 90_000);
  await until('both shards connected', async () => fake.shardCount === 2 && fake.connected && fake.identifies.length >= 2, 30_000);
}, 300_000);

afterEach((ctx) => {
  if (ctx.task.result?.state !== 'fail') return;
  for (const p of everything) process.stderr.write(`--- ${p.proc.spawnargs.slice(-1)[0]} (pid ${p.proc.pid})\n${p.out.slice(-30).join('\n')}\n`);
});

afterAll(async () => {
  await Promise.all(everything.map((p) => stopProcess(p.proc, 'SIGTERM', 15_000)));
  for (const w of inference) {
    try {
      process.kill(w.modelPid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  await queue?.close().catch(() => undefined);
  await store?.close().catch(() => undefined);
  inspect?.disconnect();
  if (redis) await stopProcess(redis);
  await fake?.close();
  if (root) rmSync(root, { recursive: true, force: true });
}, 120_000);

describe.skipIf(!ready)('distributed: 2 gateway shards, 2 inference workers, 1 jobs worker on Redis', { timeout: 300_000 }, () => {
  it('/catdog on both shards (routed by guild_id >> 22 % 2) is answered once each, by the workers', async () => {
    expect(fake.identifies.map((d) => d.shard).sort()).toEqual([
      [0, 2],
      [1, 2],
    ]);
    expect(fake.shardOf(fake.guild(0).id)).toBe(0);
    expect(fake.shardOf(fake.guild(1).id)).toBe(1);
    const asks = [askCatdog(fake.guild(0)), askCatdog(fake.guild(1))];
    for (const { i, att } of asks) {
      expect((await fake.callback(i)).body.type).toBe(5); // deferred by the gateway shard
      const answer = await answerOf(i.token);
      expect(title(answer)).toMatch(new RegExp(`^(🐶 Dog|🐱 Cat|🤷 Neither a cat nor a dog) · ${att.filename}$`));
      expect(answer.body.embeds[0].footer.text).toBe(`model: ${readActiveState().active}`);
    }
    // Exactly one answer each (a short settle: a duplicate would come from a retry).
    await new Promise((r) => setTimeout(r, 1000));
    for (const { i } of asks) expect(editsOf(i.token)).toHaveLength(1);
    // Which shard process answered: each shard's gateway logs it handles its own guild only.
    expect(gateway.out.some((l) => /\[gateway shard .*0.*\] gateway: shard\(s\) 0 of 2/.test(l))).toBe(true);
    expect(gateway.out.some((l) => /\[gateway shard .*1.*\] gateway: shard\(s\) 1 of 2/.test(l))).toBe(true);
  });

  it('an inference worker killed (SIGKILL) with a photo in hand: the other worker answers it, once', async () => {
    for (const w of inference) process.kill(w.modelPid, 'SIGSTOP');
    const { i, att } = askCatdog();
    const active = await until('the photo taken by a worker', async () => (await queue.getActive())[0]);
    const victim = inference.find((w) => w.name === active.processedBy)!;
    const survivor = inference.find((w) => w !== victim)!;
    expect(victim).toBeDefined();
    victim.p.proc.kill('SIGKILL');
    await victim.p.exit;
    process.kill(victim.modelPid, 'SIGKILL'); // stopped, it cannot see its parent go; in life it exits on its own
    process.kill(survivor.modelPid, 'SIGCONT');
    const answer = await answerOf(i.token, 60_000);
    expect(title(answer)).toMatch(new RegExp(` · ${att.filename}$`));
    await new Promise((r) => setTimeout(r, 1500));
    expect(editsOf(i.token)).toHaveLength(1);
    // A replacement joins (2 workers again for what follows).
    inference.splice(inference.indexOf(victim), 1);
    inference.push(await startInference());
    await until('2 live workers', async () => (await queue.getWorkers()).length === 2);
  });

  let cancelled: string;
  it('Cancel pressed on a gateway stops the job running in the jobs worker within one batch; the active model is untouched', async () => {
    const activeBefore = readActiveState();
    const i = fake.slashCommand('retrain', { user: alice });
    const first = await answerOf(i.token);
    expect(title(first)).toMatch(/^🛠️ Retrain #\d+ — (running|queued)$/);
    const messageId = fake.originalId(i)!;
    const jobId = /#(\d+)/.exec(title(first))![1]!;
    cancelled = jobId;
    await waitChannelEdit(
      messageId,
      (r) => /`[█░]{20}` \d+% · [2-9]\/60 photos|· 1\d\/60 photos/.test(r.body.embeds?.[0]?.description ?? ''),
      'progress from the jobs worker',
    );
    const press = fake.pressButton(messageId, `job-cancel:${jobId}`, { user: alice, guild: fake.guild(0) });
    expect((await fake.callback(press)).body.type).toBe(6);
    const doneAtCancel = (await store.jobs.get(jobId))!.progress?.done ?? 0;
    const final = await waitChannelEdit(messageId, (r) => / — cancelled$/.test(title(r)), 'the cancelled message', 30_000);
    expect(final.body.embeds[0].description).toContain('Cancelled by alice');
    const record = (await store.jobs.get(jobId))!;
    expect(record).toMatchObject({ status: 'cancelled', cancelledBy: { name: 'alice' } });
    // Stopped mid-extraction, not after it: how many photos pass between the press and the worker's
    // check depends on the machine's load (the full suite in CI saw 4), so the bound is the job's end.
    expect(record.progress?.done ?? 0).toBeGreaterThanOrEqual(doneAtCancel);
    expect(record.progress?.done ?? 0).toBeLessThan(record.progress?.total ?? 0);
    expect(jobsWorker.out.some((l) => new RegExp(`#${jobId} \\(retrain\\) cancelled`).test(l))).toBe(true);
    expect(readActiveState()).toEqual(activeBefore);
    expect(await inspect.get('catdog:jobs:current')).toBeNull();
  });

  let newModel: string;
  let retrainMessage: string;
  it('the jobs worker killed (SIGKILL) mid-retrain: the queue hands the job to the restarted worker, attempt 2 under the same record, cached photos not extracted again, the active model untouched', async () => {
    const activeBefore = readActiveState();
    const i = fake.slashCommand('retrain', { user: alice });
    const first = await answerOf(i.token);
    const jobId = /#(\d+)/.exec(title(first))![1]!;
    expect(jobId).not.toBe(cancelled);
    retrainMessage = fake.originalId(i)!;
    const mid = await waitChannelEdit(
      retrainMessage,
      (r) => /· (2\d|3\d|4\d)\/60 photos/.test(r.body.embeds?.[0]?.description ?? ''),
      'progress mid-extraction',
    );
    const doneBeforeKill = Number(/· (\d+)\/60 photos/.exec(mid.body.embeds[0].description)![1]);
    const modelPid = Number(/model process pid (\d+)/.exec(await jobsWorker.line(/model process pid \d+/))![1]);
    const killedAt = fake.mark;
    jobsWorker.proc.kill('SIGKILL');
    await jobsWorker.exit;
    await until(
      'the jobs model process gone (it exits with its parent)',
      async () => {
        try {
          process.kill(modelPid, 0);
          return false;
        } catch {
          return true;
        }
      },
      15_000,
    );
    expect((await store.jobs.get(jobId))!.status).toBe('running'); // as the dead worker left it
    expect(readActiveState()).toEqual(activeBefore);

    jobsWorker = start('jobs');
    await jobsWorker.line(/catdog jobs is ready/, 90_000);
    const final = await waitChannelEdit(retrainMessage, (r) => / — (done|failed|interrupted|cancelled)$/.test(title(r)), 'the end of the retried job', 180_000);
    expect(title(final)).toBe(`🛠️ Retrain #${jobId} — done`);
    const record = (await store.jobs.get(jobId))!;
    expect(record).toMatchObject({ status: 'succeeded', attempts: 2, startedBy: { name: 'alice' } });
    expect(jobsWorker.out.some((l) => new RegExp(`#${jobId} \\(retrain\\) runs again \\(attempt 2\\)`).test(l))).toBe(true);
    // Everything done before the kill came from the cache on the second attempt.
    newModel = record.result!.kind === 'retrain' ? record.result!.modelId : '';
    expect(newModel).toMatch(/^m-/);
    const cachedLine = channelEditsOf(retrainMessage)
      .filter((r) => r.seq > killedAt)
      .map((r) => r.body.embeds?.[0]?.description as string)
      .find((d) => /from the cache/.test(d ?? ''));
    expect(Number(/\((\d+) from the cache\)/.exec(cachedLine!)![1])).toBeGreaterThanOrEqual(doneBeforeKill);
    expect(readActiveState()).toEqual(activeBefore);
  });

  it('Promote: both inference workers answer with the new model within 5 s, no request fails; /model shows each worker', async () => {
    const asks: ReturnType<typeof askCatdog>[] = [];
    let asking = true;
    const loop = (async () => {
      while (asking) {
        asks.push(askCatdog(fake.guild(asks.length % 2)));
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    try {
      await new Promise((r) => setTimeout(r, 600));
      const press = fake.pressButton(retrainMessage, `model-promote:${newModel}:${/#(\d+)/.exec(title(channelEditsOf(retrainMessage).at(-1)!))![1]}`, {
        user: alice,
        guild: fake.guild(0),
      });
      const promoted = await answerOf(press.token, 30_000);
      const t0 = Date.now();
      expect(promoted.body.embeds[0].description).toContain('🚀 **Promoted** by alice');
      expect(readActiveState().active).toBe(newModel);
      await until(
        'both workers on the new model',
        async () => {
          const keys = await inspect.keys(`${WORKER_KEY_PREFIX}*`);
          const beats = (await inspect.mget(...keys)).map((v) => JSON.parse(v!));
          return beats.length === 2 && beats.every((b) => b.model === newModel);
        },
        5000,
        50,
      );
      expect(Date.now() - t0).toBeLessThanOrEqual(5000);
      await new Promise((r) => setTimeout(r, 1500));
    } finally {
      asking = false;
      await loop;
    }
    const answers = await Promise.all(asks.map(({ i }) => answerOf(i.token, 60_000)));
    for (const a of answers) expect(title(a)).toMatch(/ · photo\d+\.jpg$/); // none failed
    const models = answers.map((a) => a.body.embeds[0].footer.text as string);
    expect(models.at(-1)).toBe(`model: ${newModel}`);
    // The promotion was made in the jobs worker's registry; the gateway's own folder was never needed.
    expect(existsSync(gatewayRegistry())).toBe(false);
    // ... and the jobs worker's own model process took the head too (a /score now scores with it).
    await jobsWorker.line(new RegExp(`models: the jobs worker's model process now scores with ${newModel.replace(/\./g, '\\.')}$`), 10_000);
    // /model lists what each worker answers with.
    const show = fake.slashCommand('model', { user: alice, options: [{ name: 'show', type: 1 }] });
    const shown = (await answerOf(show.token)).body.embeds[0];
    expect(shown.fields.at(-1).name).toBe('Inference workers (2)');
    expect(
      shown.fields
        .at(-1)
        .value.split('\n')
        .every((l: string) => l.endsWith(`→ \`${newModel}\``)),
    ).toBe(true);
  });

  it('Redis stopped for 8 s and restarted: the photos waiting survive and are answered, and new ones are served', async () => {
    for (const w of inference) process.kill(w.modelPid, 'SIGSTOP');
    const waiting = [askCatdog(), askCatdog(), askCatdog()];
    await until('2 photos taken and 1 waiting', async () => {
      const c = await queue.getJobCounts('active', 'wait');
      return c.active === 2 && c.wait >= 1;
    });
    await stopProcess(redis!, 'SIGTERM');
    await new Promise((r) => setTimeout(r, 8000));
    redis = await startRedis(redisPort, redisDir);
    for (const w of inference) process.kill(w.modelPid, 'SIGCONT');
    for (const { i, att } of waiting) {
      const a = await answerOf(i.token, 90_000);
      expect(title(a), JSON.stringify(a.body).slice(0, 300)).toMatch(new RegExp(` · ${att.filename}$`));
    }
    const after = askCatdog(fake.guild(1));
    expect(title(await answerOf(after.i.token, 60_000))).toMatch(new RegExp(` · ${after.att.filename}$`));
    await new Promise((r) => setTimeout(r, 1500));
    for (const { i } of [...waiting, after]) expect(editsOf(i.token)).toHaveLength(1);
  });
});
