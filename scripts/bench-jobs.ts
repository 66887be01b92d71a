/**
 * `npm run bench:jobs [-- --photos 160] [--requests 40] [--gap-ms 250] [--json]`
 *
 * How long a /catdog-equivalent request (Classifier.classify on a real full-resolution photo)
 * takes while a retrain runs on the SAME Classifier instance through the real job runner, against
 * the same request when the classifier is idle: median and p95. The retrain extracts features of
 * `--photos` training photos with an empty feature cache (so it really computes), at 'batch'
 * priority through the classifier's priority lock, as /retrain does.
 *
 * Photos: the head to answer with is trained on cat/dog.0–19; the retrain uses cat/dog.100 onwards.
 * Everything goes to a temporary folder (models registry, feature cache, store); the repository's
 * models are not touched. Needs ../shared/data/dogs-vs-cats/train.zip.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { copyPhotos, temporaryModelsDir, trainingNames } from '../test/helpers/training-photos.ts';
import { sharedPath } from '../test/helpers/shared.ts';

const { values } = parseArgs({
  options: {
    photos: { type: 'string', default: '160' },
    requests: { type: 'string', default: '40' },
    'gap-ms': { type: 'string', default: '250' },
    json: { type: 'boolean', default: false },
  },
});
const PHOTOS = Number(values.photos);
const REQUESTS = Number(values.requests);
const GAP_MS = Number(values['gap-ms']);

const trainZip = sharedPath('data', 'dogs-vs-cats', 'train.zip');
if (!trainZip) {
  process.stderr.write('bench:jobs needs ../shared/data/dogs-vs-cats/train.zip\n');
  process.exit(2);
}

const root = mkdtempSync(join(tmpdir(), 'catdog-bench-jobs-'));
const modelsDir = temporaryModelsDir(root);
const log = (s: string) => process.stderr.write(`${s}\n`);

function stats(ms: number[]): { n: number; median: number; p95: number; max: number } {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]!;
  return { n: s.length, median: q(0.5), p95: q(0.95), max: s.at(-1)! };
}

try {
  const [{ Classifier }, { Registry }, { train }, { Store }, { JobRunner }, { pipelineWork }, { modelSettings }] = await Promise.all([
    import('../src/model/classifier.ts'),
    import('../src/model/registry.ts'),
    import('../src/train/train.ts'),
    import('../src/store/index.ts'),
    import('../src/jobs/runner.ts'),
    import('../src/jobs/work.ts'),
    import('../src/model/settings.ts'),
  ]);
  const model = modelSettings({ modelsDir });
  const registry = new Registry(model.registryDir);

  // A head to answer with: trained on 40 photos (not the ones the retrain uses).
  const headDir = join(root, 'head-data');
  await copyPhotos(trainZip, headDir, trainingNames(0, 20));
  const jobDir = join(root, 'train');
  const per = Math.ceil(PHOTOS / 2);
  const copied = await copyPhotos(trainZip, jobDir, trainingNames(100, 100 + per));
  const dog = readdirSync(jobDir).find((n) => n.startsWith('dog.'))!;
  const request = readFileSync(join(jobDir, dog)); // a full-resolution Kaggle photo
  const classifier = await Classifier.load({ model, head: null });
  log(`bench:jobs: ${classifier.describe()}; ${copied} photos for the retrain; request photo ${dog} (${request.length} bytes)`);
  const first = await train({ sources: [headDir], classifier, registry, cacheDir: join(root, 'head-cache'), outDir: join(root, 'head-out') });
  await registry.promote(first.modelId, { force: true });
  classifier.setHead(await registry.loadModel(first.modelId));

  // Requests are due every GAP_MS on a fixed schedule, and each is timed from when it was due to
  // its answer: time spent waiting for a blocked event loop or a busy classifier counts, as it
  // would for a person whose request reached the socket at that moment.
  async function timedRequests(keepGoing: () => boolean, max: number): Promise<number[]> {
    const out: number[] = [];
    const start = performance.now();
    for (let k = 0; k < max && keepGoing(); k++) {
      const due = start + k * GAP_MS;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      await classifier.classify(request);
      out.push(performance.now() - due);
    }
    return out;
  }

  // Idle.
  for (let i = 0; i < 3; i++) await classifier.classify(request); // warm-up
  const idle = await timedRequests(() => true, REQUESTS);

  // During a retrain on the same classifier, through the job runner.
  const dataDir = join(root, 'data');
  const store = await Store.open({ kind: 'sqlite', url: `sqlite://${join(dataDir, 'store.sqlite')}`, path: join(dataDir, 'store.sqlite') });
  const runner = new JobRunner({ repo: store.jobs, work: pipelineWork({ classifier, dataDir, registry }) });
  let extractRate = 0;
  const t0 = performance.now();
  const job = await runner.start({ kind: 'retrain', sources: [jobDir] }, { id: 'bench', name: 'bench' }, (r) => {
    if (r.progress?.stage === 'extract' && r.progress.imgPerSec) extractRate = r.progress.imgPerSec;
  });
  let ended = false;
  void job.done.then(() => (ended = true));
  // Requests while the job extracts features (the heavy part); wait for it to start computing.
  while (!ended && runner.current()?.progress?.stage !== 'extract') await new Promise((r) => setTimeout(r, 20));
  const busy = await timedRequests(() => !ended && runner.current()?.progress?.stage === 'extract', Number.MAX_SAFE_INTEGER);
  const final = await job.done;
  if (!busy.length) throw new Error('the retrain ended before any request could be timed during it: use more --photos');
  const jobSec = (performance.now() - t0) / 1000;
  await store.close();
  await classifier.close();

  const result = {
    photos: copied,
    idle: stats(idle),
    duringRetrain: stats(busy),
    retrain: { status: final.status, seconds: jobSec, extractImgPerSec: extractRate },
  };
  const f = (x: number) => `${x.toFixed(0)} ms`;
  process.stdout.write(
    [
      `classify (1 full-resolution photo), one request due every ${GAP_MS} ms, timed from when it was due`,
      `  idle:            median ${f(result.idle.median)}, p95 ${f(result.idle.p95)}, max ${f(result.idle.max)} (n=${result.idle.n})`,
      `  during retrain:  median ${f(result.duringRetrain.median)}, p95 ${f(result.duringRetrain.p95)}, max ${f(result.duringRetrain.max)} (n=${result.duringRetrain.n})`,
      `retrain of ${result.photos} photos (empty cache): ${final.status} in ${jobSec.toFixed(1)} s, extraction ${extractRate.toFixed(1)} images/s while serving`,
      '',
    ].join('\n'),
  );
  if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
} finally {
  rmSync(root, { recursive: true, force: true });
}
