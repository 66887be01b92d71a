/**
 * `npm run bench:scale [-- --requests 30] [--burst 40] [--train 30] [--json]` (a benchmark, not a test)
 *
 * /catdog end to end through the real discord.js Client against the fake Discord (defer, download,
 * classify, edit of the answer), with the real ResNet50 and the repository's active head, in:
 *   inline      today's single process: the classifier in the bot's own process (before #10)
 *   embedded    npm start: the model in a forked child process
 *   workers_1x2 the gateway (this process) + 1 inference worker with 2 threads + the jobs worker, on Redis
 *   workers_2x1 the gateway + 2 inference workers with 1 thread each + the jobs worker
 * For each: p50/p95 latency of `--requests` requests one at a time, throughput of `--burst`
 * requests sent at once, and the main (gateway) process's event-loop delay (p99,
 * perf_hooks.monitorEventLoopDelay) while a /retrain on `--train` x 2 fresh photos runs and
 * 5 photos a second arrive. hop_overhead_ms_p50 = p50(workers_1x2) − p50(embedded): the queue hop,
 * same threads: a difference of two noisy medians. hop_noop_ms_p50/p95 measure the hop alone, with
 * little noise: --hop photos sent one at a time through the real remote door (BullMQ job, QueueEvents
 * answer) to a worker whose processor answers at once, so only the queue's work is timed.
 * With --json the last line is one object. Needs ../shared/data/dogs-vs-cats/train.zip
 * and redis-server. Everything lives in a temporary folder.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { FakeDiscord, fakeDiscordEnv, makeUser, type RecordedRequest } from '../test/helpers/fake-discord.ts';
import { freePort, redisServerBin, runTs, startRedis, stopProcess, type Proc } from '../test/helpers/processes.ts';
import { repoRoot, sharedPath } from '../test/helpers/shared.ts';
import { copyPhotos, temporaryModelsDir, trainingNames } from '../test/helpers/training-photos.ts';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '30' },
    burst: { type: 'string', default: '40' },
    train: { type: 'string', default: '30' },
    modes: { type: 'string', default: 'inline,embedded,workers_1x2,workers_2x1' },
    hop: { type: 'string', default: '300' },
    json: { type: 'boolean', default: false },
  },
});
const REQUESTS = Number(values.requests);
const BURST = Number(values.burst);
const TRAIN = Number(values.train);

const trainZip = sharedPath('data', 'dogs-vs-cats', 'train.zip');
if (!trainZip || !redisServerBin) {
  process.stderr.write('bench:scale needs ../shared/data/dogs-vs-cats/train.zip and redis-server on PATH\n');
  process.exit(2);
}
const log = (s: string) => process.stderr.write(`${s}\n`);
const quiet = () => {};

const root = mkdtempSync(join(tmpdir(), 'catdog-bench-scale-'));
const models = temporaryModelsDir(root);
cpSync(join(repoRoot, 'models', 'registry'), join(models, 'registry'), { recursive: true });

interface ModeResult {
  p50_ms: number;
  p95_ms: number;
  img_per_s: number;
  loop_delay_p99_ms: number;
}

function q(ms: number[], p: number): number {
  const s = [...ms].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
}
const round = (n: number, d = 1) => Math.round(n * 10 ** d) / 10 ** d;

let fake!: FakeDiscord;
let photos: Buffer[];
let seq = 0;
let phase = '';
const failures: string[] = [];

/** One /catdog; resolves with ms from the command to the edit of its answer. */
async function ask(): Promise<number> {
  const bytes = photos[seq++ % photos.length]!;
  const att = fake.attachment(`p${seq}.jpg`, bytes, { contentType: 'image/jpeg', width: 300, height: 300 });
  const mark = fake.mark;
  const t0 = performance.now();
  const i = fake.slashCommand('catdog', { user: makeUser(`u${seq}`), options: [{ name: 'image', type: 11, value: att.id }], attachments: [att] });
  const edit = await fake.waitForRequest((r: RecordedRequest) => r.method === 'PATCH' && r.path === `/webhooks/${fake.appId}/${i.token}/messages/@original`, {
    since: mark,
    timeoutMs: 120_000,
    what: 'an answer',
  });
  if (!edit.body?.embeds?.[0]?.title?.includes(' · ')) {
    failures.push(`${phase}: ${edit.body?.content ?? JSON.stringify(edit.body).slice(0, 200)}`);
    log(`a request failed (${phase}): ${edit.body?.content ?? JSON.stringify(edit.body).slice(0, 200)}`);
  }
  return performance.now() - t0;
}

async function measure(mode: string, trainDir: string): Promise<ModeResult> {
  phase = `${mode} warm-up`;
  for (let k = 0; k < 3; k++) await ask(); // warm up
  phase = `${mode} one at a time`;
  const lat: number[] = [];
  for (let k = 0; k < REQUESTS; k++) lat.push(await ask());
  phase = `${mode} burst`;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: BURST }, () => ask()));
  phase = `${mode} during a retrain`;
  const imgPerS = BURST / ((performance.now() - t0) / 1000);

  // A retrain with 5 photos a second arriving; the event-loop delay of THIS process meanwhile.
  const h = monitorEventLoopDelay({ resolution: 5 });
  const alice = makeUser('alice', '100000000000000042');
  const mark = fake.mark;
  const i = fake.slashCommand('retrain', { user: alice });
  h.enable();
  let running = true;
  const during: Promise<number>[] = [];
  const feeder = (async () => {
    while (running) {
      during.push(ask());
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  const isEnd = (r: RecordedRequest) => / — (done|failed|cancelled|interrupted)$/.test(r.body?.embeds?.[0]?.title ?? '');
  const end = await fake.waitForRequest(
    (r) =>
      r.method === 'PATCH' &&
      r.status === 200 &&
      (r.path === `/webhooks/${fake.appId}/${i.token}/messages/@original` || r.path.startsWith('/channels/')) &&
      isEnd(r),
    { since: mark, timeoutMs: 600_000, what: 'the end of the retrain' },
  );
  running = false;
  h.disable();
  await feeder;
  await Promise.all(during);
  if (!/ — done$/.test(end.body.embeds[0].title)) throw new Error(`the retrain did not succeed: ${end.body.embeds[0].title}`);
  void trainDir;
  const r: ModeResult = {
    p50_ms: round(q(lat, 0.5)),
    p95_ms: round(q(lat, 0.95)),
    img_per_s: round(imgPerS, 2),
    loop_delay_p99_ms: round(h.percentile(99) / 1e6),
  };
  log(
    `${mode}: p50 ${r.p50_ms} ms, p95 ${r.p95_ms} ms, ${r.img_per_s} img/s, loop delay p99 during a retrain ${r.loop_delay_p99_ms} ms (max ${round(h.max / 1e6)} ms; ${during.length} photos answered meanwhile)`,
  );
  return r;
}

function baseEnv(dataDir: string, trainDir: string): Record<string, string> {
  return {
    ...fakeDiscordEnv(fake, dataDir),
    RATE_BURST: '0',
    QUEUE_SIZE: '200',
    ADMIN_USER_IDS: '100000000000000042',
    TRAIN_DATA: trainDir,
    CATDOG_MODELS_DIR: models,
    CATDOG_REGISTRY_DIR: join(models, 'registry'),
  };
}

/** The queue hop alone: the remote door (src/scale/remote.ts) against a worker that answers at once. */
async function measureHop(n: number): Promise<{ p50_ms: number; p95_ms: number }> {
  const { Worker } = await import('bullmq');
  const { RemoteClassifier } = await import('../src/scale/remote.ts');
  const { blockingConnection, CLASSIFY_QUEUE } = await import('../src/scale/connections.ts');
  const redisDir = join(root, 'redis-hop');
  mkdirSync(redisDir);
  const port = await freePort();
  const redis = await startRedis(port, redisDir, 'everysec');
  const url = `redis://127.0.0.1:${port}`;
  const answer = { dog: 0.5, label: 'dog', backbones: ['resnet50'], precision: 'fp32', model: 'noop', imagenetTop: [] };
  const worker = new Worker(CLASSIFY_QUEUE, async () => ({ ok: true, prediction: answer, worker: 'noop' }), { connection: blockingConnection(url), concurrency: 1 });
  const door = await RemoteClassifier.open({ redisUrl: url, size: 200, deadlineMs: 10_000 });
  try {
    await worker.waitUntilReady();
    const lat: number[] = [];
    for (let k = 0; k < n + 20; k++) {
      const t0 = performance.now();
      await door.classify(photos[k % photos.length]!, { key: 'g:bench' });
      if (k >= 20) lat.push(performance.now() - t0); // the first 20 warm up
    }
    const r = { p50_ms: round(q(lat, 0.5), 2), p95_ms: round(q(lat, 0.95), 2) };
    log(`queue hop alone (${n} photos of ${Math.round(photos.reduce((a, b) => a + b.length, 0) / photos.length / 1024)} KB on average, worker answering at once): p50 ${r.p50_ms} ms, p95 ${r.p95_ms} ms`);
    return r;
  } finally {
    await door.close();
    await worker.close();
    await stopProcess(redis);
  }
}

const results: Record<string, ModeResult> = {};
const procs: Proc[] = [];
try {
  fake = await FakeDiscord.start({ heartbeatIntervalMs: 5000 });
  const req = join(root, 'requests');
  await copyPhotos(trainZip, req, trainingNames(200, 210));
  photos = readdirSync(req).map((n) => readFileSync(join(req, n)));
  const modes = values.modes.split(',').filter((m) => m !== 'hop');
  const hop = Number(values.hop) > 0 ? await measureHop(Number(values.hop)) : null;
  for (const [k, mode] of modes.entries()) {
    // Fresh photos for each retrain: an empty feature cache, so it really computes.
    const trainDir = join(root, `train-${mode}`);
    await copyPhotos(trainZip, trainDir, trainingNames(300 + k * TRAIN, 300 + (k + 1) * TRAIN));
    const dataDir = join(root, `data-${mode}`);
    const env = baseEnv(dataDir, trainDir);
    if (mode === 'inline' || mode === 'embedded') {
      const { main } = await import('../src/main.ts');
      const { loadConfig } = await import('../src/config.ts');
      const classifier = mode === 'inline' ? await (await import('../src/model/classifier.ts')).Classifier.load({ model: loadConfig(env).model }) : undefined;
      const app = await main({ env, classifier, handleSignals: false, log: quiet, jobProgressIntervalMs: 1000 });
      try {
        results[mode] = await measure(mode, trainDir);
      } finally {
        await app.shutdown('bench');
      }
      continue;
    }
    const redisDir = join(root, `redis-${mode}`);
    mkdirSync(redisDir);
    const port = await freePort();
    const redis = await startRedis(port, redisDir, 'everysec');
    const url = `redis://127.0.0.1:${port}`;
    const penv = { ...env, REDIS_URL: url, JOB_PROGRESS_MS: '1000' };
    const [workers, threads] = mode === 'workers_1x2' ? [1, '2'] : [2, '1'];
    const started: Proc[] = [];
    try {
      for (let w = 0; w < workers; w++) {
        const p = runTs('src/scale/start.ts', ['inference'], { ...penv, CATDOG_THREADS: threads }, root);
        started.push(p);
        procs.push(p);
        await p.line(/catdog inference is ready/, 120_000);
      }
      const jobs = runTs('src/scale/start.ts', ['jobs'], { ...penv, CATDOG_THREADS: '2' }, root);
      started.push(jobs);
      procs.push(jobs);
      await jobs.line(/catdog jobs is ready/, 120_000);
      // The gateway in THIS process, so its event loop is the one measured.
      const { loadConfig } = await import('../src/config.ts');
      const { startGateway } = await import('../src/scale/doors.ts');
      const gateway = await startGateway(loadConfig({ ...penv, CATDOG_ROLE: 'gateway', SHARD_COUNT: '1' }), quiet);
      try {
        results[mode] = await measure(mode, trainDir);
      } finally {
        await gateway.close();
      }
    } finally {
      for (const p of started) await stopProcess(p.proc);
      await stopProcess(redis);
    }
  }
  if (modes.length < 4) {
    log(JSON.stringify({ ...results, ...(hop ? { hop_noop_ms_p50: hop.p50_ms, hop_noop_ms_p95: hop.p95_ms } : {}) }));
    process.exit(0);
  }
  const out = {
    embedded: results.embedded!,
    workers_1x2: results.workers_1x2!,
    workers_2x1: results.workers_2x1!,
    hop_overhead_ms_p50: round(results.workers_1x2!.p50_ms - results.embedded!.p50_ms),
    ...(hop ? { hop_noop_ms_p50: hop.p50_ms, hop_noop_ms_p95: hop.p95_ms } : {}),
    inline_before: results.inline!,
  };
  log('');
  log('| mode | p50 ms | p95 ms | img/s (burst) | main-loop delay p99 during a retrain, ms |');
  log('| --- | --- | --- | --- | --- |');
  for (const [m, r] of Object.entries({
    'inline (before #10)': out.inline_before,
    embedded: out.embedded,
    '1 worker x 2 threads': out.workers_1x2,
    '2 workers x 1 thread': out.workers_2x1,
  })) {
    log(`| ${m} | ${r.p50_ms} | ${r.p95_ms} | ${r.img_per_s} | ${r.loop_delay_p99_ms} |`);
  }
  log(`queue hop overhead (p50, 1x2 workers vs embedded): ${out.hop_overhead_ms_p50} ms`);
  if (hop) log(`queue hop alone (no-op worker): p50 ${hop.p50_ms} ms, p95 ${hop.p95_ms} ms`);
  log(`failed requests: ${failures.length}${failures.length ? ` (${failures.slice(0, 5).join('; ')})` : ''}`);
  if (values.json) process.stdout.write(`${JSON.stringify(out)}\n`);
} finally {
  for (const p of procs) await stopProcess(p.proc).catch(() => undefined);
  await fake?.close();
  rmSync(root, { recursive: true, force: true });
}
process.exit(0);
