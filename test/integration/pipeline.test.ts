/**
 * The training pipeline on a small slice of the shared data with the real ResNet50: extraction
 * that resumes after an interruption and computes each photo exactly once, a kill -9 in the
 * middle of a job, training into the registry, promotion, and a Kaggle submission.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Classifier } from '../../src/model/classifier.ts';
import { Registry } from '../../src/model/registry.ts';
import { modelSettings } from '../../src/model/settings.ts';
import { openDataset } from '../../src/train/dataset.ts';
import { extractFeatures } from '../../src/train/features.ts';
import { score } from '../../src/train/score.ts';
import { train } from '../../src/train/train.ts';
import type { CvOptions } from '../../src/train/train-cv.ts';
import { parseViews, viewName } from '../../src/model/views.ts';
import { repoRoot, requireShared } from '../helpers/shared.ts';

const work = mkdtempSync(join(tmpdir(), 'catdog-pipeline-'));
const trainDir = join(work, 'slice', 'train');
const testDir = join(work, 'testset', 'test');
const model = modelSettings({ registryDir: join(work, 'registry') });
const registry = new Registry(model.registryDir);
let classifier: Classifier | null = null;
let ready = false;

beforeAll(async () => {
  const zip = requireShared('data', 'dogs-vs-cats', 'train-200px.zip');
  if (!zip) return;
  mkdirSync(trainDir, { recursive: true });
  mkdirSync(testDir, { recursive: true });
  const ds = await openDataset(zip);
  const cats = ds.samples.filter((s) => s.label === 0).slice(0, 24);
  const dogs = ds.samples.filter((s) => s.label === 1).slice(0, 24);
  for (const s of [...cats, ...dogs]) writeFileSync(join(trainDir, s.name), await s.read());
  // Kaggle-style test folder: the next 5 cats and dogs under ids, with a labels file.
  const labels = ['id,label'];
  const extra = [...ds.samples.filter((s) => s.label === 0).slice(24, 29), ...ds.samples.filter((s) => s.label === 1).slice(24, 29)];
  for (const [i, s] of extra.entries()) {
    writeFileSync(join(testDir, `${10 - i}.jpg`), await s.read());
    labels.push(`${10 - i},${s.label}`);
  }
  writeFileSync(join(work, 'testset', 'labels.csv'), `${labels.join('\n')}\n`);
  await ds.close();
  // One unreadable photo: reported and skipped, never fatal.
  writeFileSync(join(trainDir, 'cat.99999.jpg'), 'this is not a jpeg');
  classifier = await Classifier.load({ model, head: null });
  ready = true;
});

afterAll(async () => {
  await classifier?.close();
});

/** `catdog train --folds` on the 48-photo slice into the test's registry. */
const trainCvOnSlice = (cacheDir: string, reports: string, l2: number[], cv: CvOptions) =>
  train({ sources: [join(work, 'slice')], classifier: classifier!, cacheDir, registry, outDir: join(work, reports), l2, cv });

/** Scores the test folder with a model from the cache, and checks that classifying three of its photos gives the same answers. */
async function expectScoringAnswersAsClassifying(modelId: string, cacheDir: string, out: string): Promise<void> {
  const scorer = await Classifier.load({ model, head: registry.headPath(modelId) });
  try {
    const s = await score({ source: join(work, 'testset'), classifier: scorer, cacheDir, out: join(work, out) });
    expect(s.n).toBe(10);
    for (const row of s.rows.slice(0, 3)) {
      const answer = await scorer.classify(readFileSync(join(testDir, `${row.id}.jpg`)));
      expect(answer.dog).toBeCloseTo(row.dog, 5);
    }
  } finally {
    await scorer.close();
  }
}

describe('feature extraction', () => {
  it('resumes after an interruption and computes each photo exactly once', async (ctx) => {
    if (!ready) return ctx.skip();
    const cacheDir = join(work, 'cache-resume');
    const ds = await openDataset(join(work, 'slice'));
    const ac = new AbortController();
    const first = extractFeatures(ds.samples, classifier!, {
      cacheDir,
      batchSize: 2,
      signal: ac.signal,
      onProgress: (p) => {
        if (p.computed >= 10) ac.abort(new Error('stop'));
      },
    });
    await expect(first).rejects.toThrow('stop');
    const second = await extractFeatures(ds.samples, classifier!, { cacheDir, batchSize: 2 });
    expect(second.cached).toBe(10);
    expect(second.computed).toBe(48 - 10);
    expect(second.failures.map((f) => f.sample.name)).toEqual(['cat.99999.jpg']);
    expect(second.failures[0].reason).toMatch(/not an image|text/i);
    const third = await extractFeatures(ds.samples, classifier!, { cacheDir, batchSize: 2 });
    expect(third).toMatchObject({ computed: 0, cached: 48 });
    await ds.close();
  });

  it('runs only the views a photo lacks: a cache of 224 px features asked for 224 and 288 computes 288 alone', async (ctx) => {
    if (!ready) return ctx.skip();
    const cacheDir = join(work, 'cache-views');
    const ds = await openDataset(join(work, 'slice'));
    const samples = ds.samples.filter((s) => s.label !== null).slice(0, 4);
    await extractFeatures(samples, classifier!, { cacheDir, views: parseViews('224') });
    const asked: string[][] = [];
    const original = classifier!.backboneFeatures.bind(classifier!);
    classifier!.backboneFeatures = (images, o) => {
      asked.push(Array.isArray(o?.views) ? o.views.map(viewName) : []);
      return original(images, o);
    };
    try {
      const second = await extractFeatures(samples, classifier!, { cacheDir, views: parseViews('224,288') });
      expect(second).toMatchObject({ computed: 4, cached: 0 });
      expect(asked).toEqual([['288'], ['288'], ['288'], ['288']]);
      const third = await extractFeatures(samples, classifier!, { cacheDir, views: parseViews('224,288') });
      expect(third).toMatchObject({ computed: 0, cached: 4 });
      expect(asked).toHaveLength(4);
    } finally {
      classifier!.backboneFeatures = original;
      await ds.close();
    }
  });

  it('survives kill -9 in the middle: the cache stays consistent and the rerun finishes the rest', async (ctx) => {
    if (!ready) return ctx.skip();
    const dataDir = join(work, 'data-kill');
    const env = { ...process.env, DATA_DIR: dataDir, CATDOG_REGISTRY_DIR: join(work, 'registry-kill') };
    const child = spawn(process.execPath, [join(repoRoot, 'bin', 'catdog.mjs'), 'features', '--no-flip', join(work, 'slice')], { env, stdio: 'ignore' });
    const cacheDir = join(dataDir, 'features');
    // Wait until some features are on disk, then kill the process without warning.
    const deadline = Date.now() + 90_000;
    let exited: number | null = null;
    child.once('exit', (c) => (exited = c ?? -1));
    for (;;) {
      if (exited !== null) throw new Error(`catdog features exited early with ${exited}`);
      const files = existsSync(cacheDir) ? readdirSync(cacheDir).filter((f) => f.startsWith('resnet50-') && !f.includes('imagenet')) : [];
      const size = files.length ? statSync(join(cacheDir, files[0])).size : 0;
      if (size >= 8 * (33 + 2048 * 4)) break;
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error('the features command wrote nothing in 90 s');
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGKILL');
    if (exited === null) await new Promise((r) => child.once('exit', r));
    const ds = await openDataset(join(work, 'slice'));
    const rerun = await extractFeatures(ds.samples, classifier!, { cacheDir });
    await ds.close();
    expect(rerun.cached).toBeGreaterThanOrEqual(7);
    expect(rerun.cached + rerun.computed).toBe(48);
  });
});

describe('training, promotion and scoring', () => {
  it('trains into the registry without touching the active model, then promotes and scores', async (ctx) => {
    if (!ready) return ctx.skip();
    const events: string[] = [];
    const r = await train({
      sources: [join(work, 'slice')],
      classifier: classifier!,
      registry,
      cacheDir: join(work, 'cache-train'),
      outDir: join(work, 'reports'),
      recipe: 'auto',
      flip: 'auto',
      l2: [0.1, 0.01],
      onProgress: (e) => events.push(e.stage),
    });
    expect(new Set(events)).toEqual(new Set(['open', 'extract', 'clean', 'fit', 'evaluate', 'save']));
    expect(r.candidates).toHaveLength(4);
    expect(r.failures.map((f) => f.key)).toEqual(['slice:train/cat.99999.jpg']);
    expect(r.trainCount + r.valCount).toBe(48 - r.outliers);
    expect(r.head.backbones).toEqual(['resnet50']);
    expect(r.head.meta).toMatchObject({ sources: ['slice'], params: expect.any(Object), metrics: expect.any(Object) });
    expect(statSync(r.curvesPng).size).toBeGreaterThan(1000);
    expect(readFileSync(r.outliersCsv, 'utf8').split('\n')[0]).toBe('file,label,top');
    expect(registry.readActiveState().active).toBeNull();
    expect((await registry.listModels()).map((m) => m.id)).toEqual([r.modelId]);

    expect((await registry.promote(r.modelId)).promoted).toBe(true);
    const scorer = await Classifier.load({ model });
    try {
      const out = join(work, 'submission.csv');
      const s = await score({ source: join(work, 'testset'), classifier: scorer, cacheDir: join(work, 'cache-train'), out, labels: join(work, 'testset', 'labels.csv') });
      const lines = readFileSync(out, 'utf8').trim().split('\n');
      expect(lines[0]).toBe('id,label');
      expect(lines.slice(1).map((l) => Number(l.split(',')[0]))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      for (const l of lines.slice(1)) expect(Number(l.split(',')[1])).toBeGreaterThanOrEqual(0);
      expect(s.n).toBe(10);
      expect(s.accuracy).toBeGreaterThanOrEqual(0.8);
      expect(s.logloss).toBeGreaterThan(0);
    } finally {
      await scorer.close();
    }
  });

  it('with --folds: chooses by grouped cross-validation over several views, records it, and scores with those views', async (ctx) => {
    if (!ready) return ctx.skip();
    const cacheDir = join(work, 'cache-train');
    const r = await trainCvOnSlice(cacheDir, 'reports-cv', [0.1, 0.01], { folds: 3, views: parseViews('224,224f,288'), calibration: 'auto', neither: { rule: 'mass', threshold: 0.005 } });
    expect(r.cv).toMatchObject({ folds: 3, views: ['224', '224f', '288'] });
    // Every readable photo is predicted out of fold, flagged ones included; training leaves those out.
    expect(r.valCount).toBe(48);
    expect(r.trainCount).toBe(48 - r.outliers);
    expect(r.head.views).toEqual(['224', '224f', '288']);
    // The precision of the features it was trained on (int8 by default), so other features are refused.
    expect(classifier!.precisions).toEqual({ resnet50: 'int8' });
    expect(r.head.precision).toBe('int8');
    expect(r.head.neither).toEqual({ rule: 'mass', threshold: 0.005 });
    const cv = r.head.meta!.cv as { folds: number; oof: { n: number; logloss: number }; pairedVsBaseline: { n: number; lo: number; hi: number }; calibration: { chosen: string } };
    expect(cv.folds).toBe(3);
    expect(cv.oof.n).toBe(48);
    expect(cv.pairedVsBaseline.n).toBe(48);
    expect(cv.pairedVsBaseline.lo).toBeLessThanOrEqual(cv.pairedVsBaseline.hi);
    expect(['none', 'temperature', 'platt', 'stack']).toContain(cv.calibration.chosen);
    expect(r.chosen.fitted.valAcc).toBeGreaterThanOrEqual(0.85);
    const scorer = await Classifier.load({ model, head: registry.headPath(r.modelId) });
    try {
      const s = await score({ source: join(work, 'testset'), classifier: scorer, cacheDir, out: join(work, 'submission-cv.csv'), labels: join(work, 'testset', 'labels.csv') });
      expect(s.n).toBe(10);
      expect(s.accuracy).toBeGreaterThanOrEqual(0.8);
    } finally {
      await scorer.close();
    }
  });

  it('--pooling avg+max: the head reads the average and the maximum, the baseline stays the average at 224 + 224f, and scoring answers as classifying does', async (ctx) => {
    if (!ready) return ctx.skip();
    const cacheDir = join(work, 'cache-train');
    const opts: CvOptions = { folds: 3, views: parseViews('224,288'), stack: 'none', calibration: 'none' };
    const avg = await trainCvOnSlice(cacheDir, 'reports-avg', [0.01], opts);
    const both = await trainCvOnSlice(cacheDir, 'reports-avgmax', [0.01], { ...opts, pooling: 'avg+max' });
    expect(avg.head.pooling).toBeUndefined();
    expect(avg.head.featureSize).toBe(2048);
    expect(both.head.pooling).toBe('avg+max');
    expect(both.head.featureSize).toBe(4096);
    expect((both.head.meta!.cv as { pooling: string }).pooling).toBe('avg+max');
    // The same photos, the same baseline; the head's own out-of-fold predictions differ.
    expect(both.cv!.baseline).toEqual(avg.cv!.baseline);
    expect(both.chosen.fitted.valLoss).not.toBe(avg.chosen.fitted.valLoss);
    await expectScoringAnswersAsClassifying(both.modelId, cacheDir, 'submission-avgmax.csv');
  });

  it('--stack imagenet: the head stacks ResNet50\'s cat-vs-dog logit, and scoring from the cache answers exactly as classifying the photo does', async (ctx) => {
    if (!ready) return ctx.skip();
    const cacheDir = join(work, 'cache-train');
    const r = await trainCvOnSlice(cacheDir, 'reports-stack', [0.01], { folds: 3, views: parseViews('224,224f,288'), stack: 'imagenet' });
    expect(r.cv?.calibration).toBe('stack');
    expect(r.head.stack).toBeDefined();
    expect(r.head.calibration).toBeUndefined();
    const cv = r.head.meta!.cv as { calibration: { chosen: string; crossFitted: Record<string, number> } };
    expect(cv.calibration.chosen).toBe('stack');
    expect(cv.calibration.crossFitted.stack).toBeGreaterThan(0);
    await expectScoringAnswersAsClassifying(r.modelId, cacheDir, 'submission-stack.csv');
  });
});
