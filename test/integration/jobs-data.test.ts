/**
 * A jobs machine whose TRAIN_DATA and TEST_DATA are missing: the jobs role says so at startup,
 * reports it in Redis, and a /retrain or /score on the gateway is refused at once with the reason
 * (no job record, nothing queued) instead of ending as a failed job after the queue hop; /model
 * shows it; once the data is there, the jobs worker says so within seconds, and a /retrain runs
 * on it. The gateway has no TRAIN_DATA or TEST_DATA of its own: the jobs worker fills in its own
 * paths. Real processes as `npm run start:<role>` runs them (the jobs worker with its ResNet50
 * model process), our own redis-server, the fake Discord.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { JOBS_QUEUE } from '../../src/scale/connections.ts';
import { Store } from '../../src/store/index.ts';
import { FakeDiscord, makeUser, type RecordedRequest } from '../helpers/fake-discord.ts';
import { freePort, redisServerBin, runTs, startRedis, stopProcess, type Proc } from '../helpers/processes.ts';
import { requireShared } from '../helpers/shared.ts';
import { copyPhotos, temporaryModelsDir, trainingNames } from '../helpers/training-photos.ts';

const alice = makeUser('alice');
const trainZip = requireShared('data', 'dogs-vs-cats', 'train.zip');
let root: string;
let trainDir: string;
let testDir: string;
let fake: FakeDiscord;
let redis: ChildProcess | null = null;
let store: Store;
let inspect: Redis;
let jobsQueue: Queue;
let jobs: Proc;
let gateway: Proc;
const started: Proc[] = [];

beforeAll(async () => {
  if (!redisServerBin) return;
  root = mkdtempSync(join(tmpdir(), 'catdog-jobs-data-'));
  const models = temporaryModelsDir(root);
  trainDir = join(root, 'not-mounted', 'train');
  testDir = join(root, 'not-mounted', 'test');
  mkdirSync(join(root, 'redis'));
  const port = await freePort();
  redis = await startRedis(port, join(root, 'redis'));
  const url = `redis://127.0.0.1:${port}`;
  store = await Store.open({ kind: 'redis', url });
  inspect = new Redis(url, { maxRetriesPerRequest: null });
  inspect.on('error', () => undefined);
  const connection = new Redis(url, { maxRetriesPerRequest: null });
  connection.on('error', () => undefined);
  jobsQueue = new Queue(JOBS_QUEUE, { connection });
  jobsQueue.on('error', () => undefined);
  fake = await FakeDiscord.start({ heartbeatIntervalMs: 2000 });
  const env = {
    REDIS_URL: url,
    DISCORD_TOKEN: fake.token,
    DISCORD_APP_ID: fake.appId,
    DISCORD_GUILD_ID: fake.guild().id,
    DISCORD_API_URL: fake.apiUrl,
    DATA_DIR: join(root, 'data'),
    CATDOG_MODELS_DIR: models,
    CATDOG_THREADS: '1',
    ADMIN_USER_IDS: alice.id,
    RATE_BURST: '0',
    JOB_PROGRESS_MS: '300',
  };
  // The data paths are the jobs machine's; the gateway (another machine) has none.
  jobs = runTs('src/scale/start.ts', ['jobs'], { ...env, TRAIN_DATA: trainDir, TEST_DATA: testDir }, root);
  started.push(jobs);
  await jobs.line(/catdog jobs is ready/, 180_000);
  gateway = runTs('src/scale/start.ts', ['gateway'], env, root);
  started.push(gateway);
  await gateway.line(/catdog gateway is ready/, 120_000);
}, 320_000);

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') for (const p of started) process.stderr.write(`--- pid ${p.proc.pid}\n${p.out.slice(-30).join('\n')}\n`);
});

afterAll(async () => {
  await Promise.all(started.map((p) => stopProcess(p.proc, 'SIGTERM', 15_000)));
  await jobsQueue?.close().catch(() => undefined);
  await store?.close().catch(() => undefined);
  inspect?.disconnect();
  if (redis) await stopProcess(redis);
  await fake?.close();
  if (root) rmSync(root, { recursive: true, force: true });
}, 60_000);

const isOriginalEdit = (token: string) => (r: RecordedRequest) =>
  r.method === 'PATCH' && r.path === `/webhooks/${fake.appId}/${token}/messages/@original` && r.status === 200;
const answerOf = (token: string) => fake.waitForRequest(isOriginalEdit(token), { timeoutMs: 30_000, what: `the answer to ${token}` });
const title = (r: RecordedRequest): string => r.body?.embeds?.[0]?.title ?? '';
const literally = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
function waitChannelEdit(messageId: string, pred: (r: RecordedRequest) => boolean, what: string, timeoutMs = 90_000): Promise<RecordedRequest> {
  return fake.waitForRequest(
    (r) => r.method === 'PATCH' && r.path.startsWith('/channels/') && r.path.endsWith(`/messages/${messageId}`) && r.status === 200 && pred(r),
    { timeoutMs, what },
  );
}
const nothingQueued = async () => {
  expect(await store.jobs.recent()).toEqual([]);
  expect(await jobsQueue.getJobCounts('wait', 'active', 'completed', 'failed')).toEqual({ wait: 0, active: 0, completed: 0, failed: 0 });
  expect(await inspect.get('catdog:jobs:current')).toBeNull();
};

describe.skipIf(!redisServerBin)('a jobs machine without its training and test data', { timeout: 120_000 }, () => {
  it('the jobs worker warns at startup, naming the paths', () => {
    expect(jobs.out.some((l) => l.includes(`[jobs] jobs: warning: /retrain will fail on this machine: ${trainDir} is not there (TRAIN_DATA)`))).toBe(true);
    expect(jobs.out.some((l) => l.includes(`[jobs] jobs: warning: /score will fail on this machine: ${testDir} is not there (TEST_DATA, TEST_LABELS)`))).toBe(
      true,
    );
  });

  it('/retrain is refused at once with the reason; no job is recorded or queued', async () => {
    const i = fake.slashCommand('retrain', { user: alice });
    const answer = await answerOf(i.token);
    expect(answer.body.content).toMatch(/^📂 The jobs worker cannot use its training data, so a retrain would fail: /);
    expect(answer.body.content).toContain(`${trainDir} is not there (TRAIN_DATA on `);
    expect(answer.body.content).toContain('Nothing was started');
    await nothingQueued();
  });

  it("/score is refused at once with the jobs worker's reason (its TEST_DATA, not the gateway's); no job is recorded or queued", async () => {
    const i = fake.slashCommand('score', { user: alice });
    const answer = await answerOf(i.token);
    expect(answer.body.content).toMatch(/^📂 The jobs worker cannot use its test data, so a scoring run would fail: /);
    expect(answer.body.content).toContain(`${testDir} is not there (TEST_DATA, TEST_LABELS on `);
    expect(answer.body.content).toContain('Nothing was started');
    await nothingQueued();
  });

  it('/model shows the jobs worker and why a retrain would fail there; once the data is there it says so', async () => {
    const show = async () => {
      const i = fake.slashCommand('model', { user: alice, options: [{ name: 'show', type: 1 }] });
      return ((await answerOf(i.token)).body.embeds[0].fields as { name: string; value: string }[]).find((f) => f.name.startsWith('Jobs workers'));
    };
    const before = await show();
    expect(before?.name).toBe('Jobs workers (1)');
    expect(before?.value).toMatch(
      new RegExp(`^\`jobs@[^\`]+\` → ⚠️ /retrain would fail: ${literally(trainDir)} is not there · ⚠️ /score would fail: ${literally(testDir)} is not there$`),
    );

    if (trainZip) expect(await copyPhotos(trainZip, trainDir, trainingNames(100, 120))).toBe(40);
    else mkdirSync(trainDir, { recursive: true });
    await jobs.line(/jobs: the training data can be read now \(TRAIN_DATA\)/, 15_000);
    const t0 = Date.now();
    const beat = async () => JSON.parse((await inspect.get((await inspect.keys('catdog:jobs-worker:*'))[0]!))!);
    while ((await beat()).trainDataProblems.length && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 100));
    const after = await show();
    expect(after?.value).toMatch(new RegExp(`^\`jobs@[^\`]+\` → training data ✅ · ⚠️ /score would fail: ${literally(testDir)} is not there$`));
  });

  it.skipIf(!trainZip)("a /retrain from the gateway (no TRAIN_DATA of its own) runs on the jobs worker with the jobs worker's TRAIN_DATA", async () => {
    const i = fake.slashCommand('retrain', { user: alice });
    const first = await answerOf(i.token);
    expect(title(first)).toMatch(/^🛠️ Retrain #\d+ — (running|queued)$/);
    const jobId = /#(\d+)/.exec(title(first))![1]!;
    const messageId = fake.originalId(i)!;
    // Progress edited by the jobs worker: it opened its own TRAIN_DATA and extracts features.
    await waitChannelEdit(messageId, (r) => /\d+\/40 photos/.test(r.body.embeds?.[0]?.description ?? ''), 'progress from the jobs worker');
    expect(await store.jobs.get(jobId)).toMatchObject({ status: 'running', params: { kind: 'retrain', sources: [trainDir] }, attempts: 1 });
    const press = fake.pressButton(messageId, `job-cancel:${jobId}`, { user: alice, guild: fake.guild() });
    expect((await fake.callback(press)).body.type).toBe(6);
    await waitChannelEdit(messageId, (r) => / — cancelled$/.test(title(r)), 'the cancelled message', 30_000);
    expect(await store.jobs.get(jobId)).toMatchObject({ status: 'cancelled', cancelledBy: { name: 'alice' } });
  });
});
