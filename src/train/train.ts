/**
 * `catdog train`: dataset → features (cached) → outlier cleaning → head fitting → evaluation →
 * a new version in the model registry (not active until promoted).
 *
 * Recipes are compared on the same validation split (seed 2018, last 20% after the shuffle):
 * the seed's Dropout+Dense with Adadelta, and the L2 logistic regression; each with and without
 * test-time flip averaging. With recipe 'auto' the lowest validation log loss wins.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { CatdogError } from '../errors.ts';
import { BACKBONES } from '../model/backbones/index.ts';
import type { Classifier } from '../model/classifier.ts';
import { HEAD_FORMAT, headPrecisionField, type HeadFile } from '../model/head.ts';
import type { Registry } from '../model/registry.ts';
import { lineChartPng, sideBySidePng } from '../report/curves.ts';
import { RESIZE_KERNEL } from '../vision/preprocess.ts';
import { findOutliers, readOutlierKeys, writeOutlierReport, DEFAULT_CLEAN_TOP_K } from './clean.ts';
import { openDataset } from './dataset.ts';
import { extractInto, openFeatureStore, trainingSet, type ExtractProgress } from './features.ts';
import { fitLogreg, fitSeedRecipe, predictLinear, split, type FittedHead, type TrainingSet } from './fit.ts';
import { accuracy, logLoss } from './metrics.ts';
import type { PairedComparison } from './cv.ts';
import { trainCv, type CvOptions } from './train-cv.ts';

export type Recipe = 'auto' | 'seed' | 'logreg';

export interface TrainProgress {
  stage: 'open' | 'extract' | 'clean' | 'fit' | 'evaluate' | 'save';
  message: string;
  extract?: ExtractProgress;
}

export interface TrainOptions {
  sources: string[];
  classifier: Classifier;
  /** Where the trained head is stored (not made active). */
  registry: Registry;
  /** Feature cache folder. */
  cacheDir: string;
  /** Where reports (outliers.csv, curves PNG) go. */
  outDir: string;
  recipe?: Recipe;
  /** 'auto' tries both; true/false forces flip test-time augmentation on or off. */
  flip?: boolean | 'auto';
  epochs?: number;
  validationSplit?: number;
  seed?: number;
  l2?: number[];
  learningRate?: number;
  /** Keep flagged outliers in training. */
  keepOutliers?: boolean;
  /** A reviewed outliers.csv: exactly these are left out (instead of the automatic list). */
  outliersFile?: string;
  cleanTopK?: number;
  /** Choose by k-fold cross-validation (train-cv.ts) instead of one validation split. */
  cv?: CvOptions;
  /** Train on a seeded random sample of this many labelled photos (the first N of `catdog features --shuffle`'s order). */
  sample?: number;
  signal?: AbortSignal;
  onProgress?: (p: TrainProgress) => void;
}

export interface Candidate {
  recipe: 'seed' | 'logreg';
  flip: boolean;
  fitted: FittedHead;
  /** Time to fit, seconds. */
  seconds: number;
}

export interface TrainResult {
  modelId: string;
  head: HeadFile;
  /** Cross-validated runs also name each candidate's answer views and calibration ('none', 'temperature', 'platt', 'stack'); their figures are out of fold. */
  candidates: { recipe: string; flip: boolean; views?: string; calibration?: string; valLoss: number; valAcc: number; seconds: number }[];
  chosen: Candidate;
  outliers: number;
  trainCount: number;
  valCount: number;
  /** Validation metrics per training source (e.g. full-resolution train.zip vs train-200px.zip). */
  valBySource: Record<string, { n: number; logloss: number; accuracy: number }>;
  failures: { key: string; reason: string }[];
  curvesPng: string;
  outliersCsv: string;
  /** With cross-validation: folds, answer views, calibration, the baseline's OOF metrics and the paired comparison with it. */
  cv?: { folds: number; views: string[]; calibration: string; baseline: { n: number; logloss: number; accuracy: number }; paired: PairedComparison };
}

export async function train(o: TrainOptions): Promise<TrainResult> {
  if (o.cv) return trainCv({ ...o, cv: o.cv });
  const progress = (stage: TrainProgress['stage'], message: string, extract?: ExtractProgress) => o.onProgress?.({ stage, message, extract });
  const classifier = o.classifier;
  await mkdir(o.outDir, { recursive: true });

  progress('open', `opening ${o.sources.join(', ')}`);
  const ds = await openDataset(o.sources, { kind: 'train' });
  const store = openFeatureStore(classifier, o.cacheDir);
  try {
    const labelled = ds.samples.filter((s) => s.label !== null);
    if (!labelled.length) throw new CatdogError('no_training_data', `No labelled photos (cat.N.jpg / dog.N.jpg) in ${o.sources.join(', ')}.`);
    const flipModes = o.flip === 'auto' || o.flip === undefined ? [false, true] : [o.flip];
    const needFlip = flipModes.includes(true);
    const extracted = await extractInto(store, labelled, classifier, {
      cacheDir: o.cacheDir,
      flip: needFlip,
      signal: o.signal,
      onProgress: (p) => progress('extract', `features ${p.done}/${p.total}`, p),
    });

    progress('clean', 'looking for outliers');
    const auto = findOutliers(store, extracted.ok, null, o.cleanTopK ?? DEFAULT_CLEAN_TOP_K);
    const outliersCsv = join(o.outDir, 'outliers.csv');
    const labels = classifier.imagenetLabels;
    await writeOutlierReport(findOutliers(store, extracted.ok, labels, o.cleanTopK ?? DEFAULT_CLEAN_TOP_K), outliersCsv, join(o.outDir, 'outliers.png'));
    let excluded = new Set(auto.map((x) => x.item.sample.key));
    if (o.outliersFile) excluded = await readOutlierKeys(o.outliersFile);
    if (o.keepOutliers) excluded = new Set();
    const items = extracted.ok.filter((x) => !excluded.has(x.sample.key));
    progress('clean', `${auto.length} outliers flagged, ${extracted.ok.length - items.length} left out of training`);

    const recipes: ('seed' | 'logreg')[] = o.recipe === 'seed' ? ['seed'] : o.recipe === 'logreg' ? ['logreg'] : ['seed', 'logreg'];
    const candidates: Candidate[] = [];
    const sets = new Map<boolean, TrainingSet>();
    for (const flip of flipModes) sets.set(flip, trainingSet(store, items, flip));
    for (const flip of flipModes) {
      const data = sets.get(flip)!;
      for (const recipe of recipes) {
        o.signal?.throwIfAborted();
        progress('fit', `fitting ${recipe}${flip ? ' with flip averaging' : ''} on ${data.n} photos`);
        const fitStart = performance.now();
        const fitted =
          recipe === 'seed'
            ? await fitSeedRecipe(data, {
                seed: o.seed,
                validationSplit: o.validationSplit,
                epochs: o.epochs,
                learningRate: o.learningRate,
                signal: o.signal,
                onEpoch: (e) => progress('fit', `seed recipe epoch ${e.epoch}: loss ${e.loss.toFixed(4)} acc ${(e.acc * 100).toFixed(2)}% val_loss ${e.valLoss.toFixed(4)} val_acc ${(e.valAcc * 100).toFixed(2)}%`),
              })
            : fitLogreg(data, { seed: o.seed, validationSplit: o.validationSplit, l2: o.l2, signal: o.signal, onProgress: (m) => progress('fit', m) });
        const seconds = (performance.now() - fitStart) / 1000;
        candidates.push({ recipe, flip, fitted, seconds });
        progress('fit', `${recipe}${flip ? '+flip' : ''}: validation log loss ${fitted.valLoss.toFixed(4)}, accuracy ${(fitted.valAcc * 100).toFixed(2)}% (${seconds.toFixed(1)} s)`);
      }
    }
    const chosen = candidates.reduce((a, b) => (b.fitted.valLoss < a.fitted.valLoss ? b : a));

    progress('evaluate', 'validation metrics per source');
    const data = sets.get(chosen.flip)!;
    const { val, valIdx } = split(data, { seed: o.seed, validationSplit: o.validationSplit });
    const pVal = predictLinear(val, chosen.fitted.kernel, chosen.fitted.bias, chosen.fitted.mean, chosen.fitted.scale);
    const labelledItems = items.filter((x) => x.sample.label !== null);
    const groups = new Map<string, { y: number[]; p: number[] }>();
    valIdx.forEach((k, i) => {
      const src = basename(labelledItems[k].sample.source);
      const g = groups.get(src) ?? { y: [], p: [] };
      g.y.push(val.y[i]);
      g.p.push(pVal[i]);
      groups.set(src, g);
    });
    const valBySource = Object.fromEntries(
      [...groups].map(([src, g]) => [src, { n: g.y.length, logloss: logLoss(g.y, g.p), accuracy: accuracy(g.y, g.p) }]),
    );

    const curvesPng = join(o.outDir, 'curves.png');
    await writeFile(curvesPng, await curvesChart(candidates, chosen));

    progress('save', 'saving the head to the model registry');
    const info = classifier.info();
    const sourceHash = createHash('sha256')
      .update(extracted.ok.map((x) => x.hash).sort().join('\n'))
      .digest('hex');
    const head: HeadFile = {
      format: HEAD_FORMAT,
      backbones: info.backbones,
      featureSize: data.d,
      weights: Object.fromEntries(info.backboneInfo.map((b) => [b.name, b.weights])),
      precision: headPrecisionField(info.precisions, info.backbones),
      kernel: Array.from(chosen.fitted.kernel),
      bias: chosen.fitted.bias,
      ...(chosen.fitted.mean ? { mean: Array.from(chosen.fitted.mean), scale: Array.from(chosen.fitted.scale!) } : {}),
      tta: chosen.flip ? 'flip' : 'none',
      meta: {
        date: new Date().toISOString(),
        recipe: chosen.recipe,
        params: chosen.fitted.params,
        preprocess: { resize: `squash to the backbone size, sharp ${RESIZE_KERNEL}`, modes: Object.fromEntries(info.backboneInfo.map((b) => [b.name, BACKBONES[b.name].preprocess])) },
        sources: o.sources.map((s) => basename(s)),
        sourceHash,
        photos: extracted.ok.length,
        outliers: { flagged: auto.length, excluded: extracted.ok.length - items.length, topK: o.cleanTopK ?? DEFAULT_CLEAN_TOP_K, reviewedList: o.outliersFile ? basename(o.outliersFile) : null },
        metrics: { valLoss: chosen.fitted.valLoss, valAcc: chosen.fitted.valAcc, trainCount: data.n - val.n, valCount: val.n, valBySource },
        candidates: candidates.map((c) => ({ recipe: c.recipe, flip: c.flip, valLoss: c.fitted.valLoss, valAcc: c.fitted.valAcc, seconds: c.seconds, params: c.fitted.params })),
        history: chosen.fitted.history,
      },
    };
    const modelId = await o.registry.addModel(head);
    return {
      modelId,
      head: { ...head, meta: { ...head.meta, id: modelId } },
      candidates: candidates.map((c) => ({ recipe: c.recipe, flip: c.flip, valLoss: c.fitted.valLoss, valAcc: c.fitted.valAcc, seconds: c.seconds })),
      chosen,
      outliers: auto.length,
      trainCount: data.n - val.n,
      valCount: val.n,
      valBySource,
      failures: extracted.failures.map((f) => ({ key: f.sample.key, reason: f.reason })),
      curvesPng,
      outliersCsv,
    };
  } finally {
    store.close();
    await ds.close();
  }
}

async function curvesChart(candidates: Candidate[], chosen: Candidate): Promise<Buffer> {
  const seed = candidates.find((c) => c.recipe === 'seed' && c.flip === chosen.flip) ?? candidates.find((c) => c.recipe === 'seed');
  const charts: Buffer[] = [];
  if (seed) {
    const h = seed.fitted.history;
    charts.push(
      await lineChartPng({
        title: `Seed recipe (Adadelta lr ${seed.fitted.params.learningRate}, batch ${seed.fitted.params.batchSize}): log loss`,
        xLabel: 'epoch',
        yLabel: 'binary cross-entropy',
        series: [
          { name: 'train', color: '#1f77b4', points: h.map((e) => [e.epoch, e.loss]) },
          { name: 'validation', color: '#d62728', points: h.map((e) => [e.epoch, e.valLoss]) },
        ],
      }),
      await lineChartPng({
        title: 'Seed recipe: accuracy',
        xLabel: 'epoch',
        yLabel: 'accuracy',
        series: [
          { name: 'train', color: '#1f77b4', points: h.map((e) => [e.epoch, e.acc]) },
          { name: 'validation', color: '#d62728', points: h.map((e) => [e.epoch, e.valAcc]) },
        ],
      }),
    );
  }
  const logregs = candidates.filter((c) => c.recipe === 'logreg');
  if (logregs.length) {
    charts.push(
      await lineChartPng({
        title: 'L2 logistic regression: validation log loss by strength',
        xLabel: 'log10(l2)',
        yLabel: 'validation log loss',
        series: logregs.map((c, i) => ({
          name: c.flip ? 'with flip averaging' : 'photo only',
          color: i % 2 ? '#2ca02c' : '#9467bd',
          points: c.fitted.history.map((e, k) => [Math.log10(Number((c.fitted.params.l2Grid as string | undefined)?.split(',')[k] ?? k)), e.valLoss] as [number, number]),
        })),
      }),
    );
  }
  return charts.length > 1 ? sideBySidePng(charts) : charts[0];
}
