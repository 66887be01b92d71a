/**
 * The training pipeline's CLI commands: data inspect, clean, features, train, score, model.
 * Each is a thin door onto src/train and src/model/registry; Ctrl-C aborts cleanly (the cache
 * keeps what was computed; the active model is untouched).
 */
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { validNeither, type NeitherRule } from '../model/neither.ts';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Classifier } from '../model/classifier.ts';
import type { Config } from '../config.ts';
import { Registry } from '../model/registry.ts';
import { parseViews, type ViewSpec } from '../model/views.ts';
import { parsePooling } from '../model/pooling.ts';
import { findOutliers, writeOutlierReport, DEFAULT_CLEAN_TOP_K } from '../train/clean.ts';
import { openDataset } from '../train/dataset.ts';
import { defaultCacheDir, extractInto, openFeatureStore } from '../train/features.ts';
import { inspectDataset, writeInspectReport, type InspectReport } from '../train/inspect.ts';
import { formatConfusion } from '../train/metrics.ts';
import { score } from '../train/score.ts';
import { train, type Recipe } from '../train/train.ts';
import type { CvOptions } from '../train/train-cv.ts';
import { formatPaired } from '../train/cv.ts';
import { shuffledTrainFirst } from '../train/cv.ts';
import { CatdogError } from '../errors.ts';
import { extractLine, progressPrinter } from './progress.ts';
import { describeError } from './predict.ts';

const err = (s: string) => process.stderr.write(`${s}\n`);
const out = (s: string) => process.stdout.write(`${s}\n`);

/** An AbortSignal fired by Ctrl-C / SIGTERM, for the duration of one command. */
function interruptSignal(): { signal: AbortSignal; dispose(): void } {
  const ac = new AbortController();
  const onSig = () => {
    err('catdog: stopping (what was computed is kept in the cache)…');
    ac.abort(new Error('interrupted'));
  };
  process.once('SIGINT', onSig);
  process.once('SIGTERM', onSig);
  return {
    signal: ac.signal,
    dispose() {
      process.off('SIGINT', onSig);
      process.off('SIGTERM', onSig);
    },
  };
}

async function guarded(fn: (signal: AbortSignal) => Promise<number>): Promise<number> {
  const { signal, dispose } = interruptSignal();
  try {
    return await fn(signal);
  } catch (e) {
    if (signal.aborted) {
      err('catdog: interrupted.');
      return 130;
    }
    err(`catdog: ${describeError(e)}`);
    return 1;
  } finally {
    dispose();
  }
}

async function loadForPipeline(config: Config, headless: boolean): Promise<Classifier> {
  const c = await Classifier.load({ model: config.model, head: headless ? null : undefined, log: err });
  err(`catdog: ${c.describe()}`);
  return c;
}

export async function dataCommand(argv: string[], config: Config): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'inspect') {
    err('usage: catdog data inspect <source>... [--out DIR]');
    return 2;
  }
  const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { out: { type: 'string' } } });
  if (!positionals.length) {
    err('usage: catdog data inspect <source>... [--out DIR]');
    return 2;
  }
  return guarded(async (signal) => {
    const p = progressPrinter(process.stderr, { ci: config.ci });
    const report = await inspectDataset(positionals, { signal, onProgress: (d, t) => p.update(`inspect ${d}/${t}`, d === t) });
    p.done();
    const dir = resolve(values.out ?? join(config.dataDir, 'reports', 'inspect'));
    const files = await writeInspectReport(report, dir);
    out(JSON.stringify(summaryOf(report), null, 2));
    out(`wrote ${files.json} and ${files.png}`);
    return 0;
  });
}

/** The report without its per-photo list (that goes to inspect.json and the plot). */
function summaryOf(report: InspectReport): Omit<InspectReport, 'images'> {
  const { images: _images, ...rest } = report;
  return rest;
}

export async function cleanCommand(argv: string[], config: Config): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { k: { type: 'string' }, out: { type: 'string' } },
  });
  if (!positionals.length) {
    err('usage: catdog clean <source>... [--k 10] [--out DIR]');
    return 2;
  }
  return guarded(async (signal) => {
    const classifier = await loadForPipeline(config, true);
    const ds = await openDataset(positionals, { kind: 'train' });
    const store = openFeatureStore(classifier, defaultCacheDir(config.dataDir));
    try {
      const p = progressPrinter(process.stderr, { ci: config.ci });
      const ex = await extractInto(store, ds.samples.filter((s) => s.label !== null), classifier, {
        cacheDir: defaultCacheDir(config.dataDir),
        signal,
        onProgress: (x) => p.update(extractLine('clean', x), x.done === x.total),
      });
      p.done();
      const k = values.k ? Number(values.k) : DEFAULT_CLEAN_TOP_K;
      const outliers = findOutliers(store, ex.ok, classifier.imagenetLabels, k);
      const dir = resolve(values.out ?? join(config.dataDir, 'reports', 'clean'));
      await mkdir(dir, { recursive: true });
      await writeOutlierReport(outliers, join(dir, 'outliers.csv'), join(dir, 'outliers.png'));
      out(`${outliers.length} of ${ex.ok.length} photos have no cat or dog class in their ImageNet top ${k}; ${ex.failures.length} unreadable.`);
      for (const f of ex.failures) out(`unreadable: ${f.sample.key}: ${f.reason}`);
      out(`wrote ${join(dir, 'outliers.csv')} and ${join(dir, 'outliers.png')} — review them, then pass the list to \`catdog train --outliers FILE\`.`);
      return 0;
    } finally {
      store.close();
      await ds.close();
      await classifier.close();
    }
  });
}

export async function featuresCommand(argv: string[], config: Config): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { 'no-flip': { type: 'boolean', default: false }, views: { type: 'string' }, shuffle: { type: 'boolean', default: false }, limit: { type: 'string' } },
  });
  if (!positionals.length) {
    err('usage: catdog features <source>... [--no-flip | --views 224,224f,288,288f]');
    return 2;
  }
  let views: ViewSpec[] | undefined;
  try {
    views = values.views ? parseViews(values.views) : undefined;
  } catch (e) {
    err(`catdog: ${describeError(e)}`);
    return 2;
  }
  return guarded(async (signal) => {
    const classifier = await loadForPipeline(config, true);
    const ds = await openDataset(positionals);
    try {
      const p = progressPrinter(process.stderr, { ci: config.ci });
      const store = openFeatureStore(classifier, defaultCacheDir(config.dataDir));
      try {
        // --shuffle: training photos in a seeded random order (test photos after them), so that a
        // run stopped early leaves a random sample of the training photos cached, not one class.
        // --limit N (with --shuffle): only the first N training photos of that order, the sample `catdog train --sample N` uses.
        let samples = values.shuffle ? shuffledTrainFirst(ds.samples) : ds.samples;
        if (values.limit) samples = samples.filter((s, i) => s.label === null || i < Number(values.limit));
        const r = await extractInto(store, samples, classifier, {
          cacheDir: defaultCacheDir(config.dataDir),
          flip: !values['no-flip'],
          views,
          signal,
          onProgress: (x) => p.update(extractLine('features', x), x.done === x.total),
        });
        p.done();
        out(`${r.ok.length} photos: ${r.computed} computed, ${r.cached} already cached, ${r.failures.length} unreadable.`);
        for (const f of r.failures) out(`unreadable: ${f.sample.key}: ${f.reason}`);
      } finally {
        store.close();
      }
      return 0;
    } finally {
      await ds.close();
      await classifier.close();
    }
  });
}

export async function trainCommand(argv: string[], config: Config): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      recipe: { type: 'string', default: 'auto' },
      flip: { type: 'string', default: 'auto' },
      epochs: { type: 'string' },
      'validation-split': { type: 'string' },
      seed: { type: 'string' },
      l2: { type: 'string' },
      'learning-rate': { type: 'string' },
      outliers: { type: 'string' },
      'keep-outliers': { type: 'boolean', default: false },
      promote: { type: 'boolean', default: false },
      force: { type: 'boolean', default: false },
      out: { type: 'string' },
      json: { type: 'boolean', default: false },
      folds: { type: 'string' },
      views: { type: 'string' },
      'train-views': { type: 'string' },
      pooling: { type: 'string' },
      clean: { type: 'string' },
      calibration: { type: 'string' },
      stack: { type: 'string' },
      neither: { type: 'string' },
      sample: { type: 'string' },
    },
  });
  let cv: CvOptions | undefined;
  try {
    cv = values.folds ? cvOptions(values) : undefined;
  } catch (e) {
    err(`catdog: ${describeError(e)}`);
    return 2;
  }
  const sources = positionals.length ? positionals : config.data.train;
  if (!sources.length) {
    err('usage: catdog train <source>... [--recipe auto|seed|logreg] [--flip auto|on|off] [--epochs 8] [--validation-split 0.2] [--seed 2018] [--l2 0.01,0.003] [--outliers FILE | --keep-outliers] [--promote [--force]]');
    err('       catdog train <source>... --folds K [--views 224,224f,288] [--train-views 224,224f,288,288f] [--pooling avg|avg+max] [--clean top10|mass[:0.01]|none] [--calibration auto|none|temperature|platt] [--stack auto|imagenet|none] [--neither top10|mass:T] [--sample N] [--l2 ...] [--promote [--force]]');
    return 2;
  }
  if (!['auto', 'seed', 'logreg'].includes(values.recipe!)) {
    err(`catdog: --recipe must be auto, seed or logreg, not ${values.recipe}`);
    return 2;
  }
  return guarded(async (signal) => {
    const classifier = await loadForPipeline(config, true);
    try {
      const p = progressPrinter(process.stderr, { ci: config.ci });
      const t0 = performance.now();
      const dir = resolve(values.out ?? join(config.dataDir, 'reports', 'train'));
      const r = await train({
        sources,
        classifier,
        registry: new Registry(config.model.registryDir),
        cacheDir: defaultCacheDir(config.dataDir),
        outDir: dir,
        recipe: values.recipe as Recipe,
        flip: values.flip === 'on' ? true : values.flip === 'off' ? false : 'auto',
        epochs: values.epochs ? Number(values.epochs) : undefined,
        validationSplit: values['validation-split'] ? Number(values['validation-split']) : undefined,
        seed: values.seed ? Number(values.seed) : undefined,
        l2: values.l2 ? values.l2.split(',').map(Number) : undefined,
        learningRate: values['learning-rate'] ? Number(values['learning-rate']) : undefined,
        outliersFile: values.outliers,
        keepOutliers: values['keep-outliers'],
        cv,
        sample: values.sample ? Number(values.sample) : undefined,
        signal,
        onProgress: (e) => {
          if (e.extract) p.update(extractLine('features', e.extract), e.extract.done === e.extract.total);
          else {
            p.done();
            err(`[${e.stage}] ${e.message}`);
          }
        },
      });
      if (r.cv) {
        const c = r.cv;
        out(`model ${r.modelId}: logreg on views ${c.views.join('+')}, ${c.calibration === 'stack' ? "stacked with ImageNet's cat-vs-dog logit" : `${c.calibration} calibration`}; ${c.folds}-fold out-of-fold log loss ${r.chosen.fitted.valLoss.toFixed(4)}, accuracy ${(r.chosen.fitted.valAcc * 100).toFixed(2)}% over ${r.valCount} photos (trained on ${r.trainCount}, ${r.outliers} flagged)`);
        out(`  baseline (logreg, 224+224f): OOF log loss ${c.baseline.logloss.toFixed(4)}, accuracy ${(c.baseline.accuracy * 100).toFixed(2)}%; paired: ${formatPaired(c.paired)}`);
      } else
      out(`model ${r.modelId}: ${r.chosen.recipe}${r.chosen.flip ? ' + flip averaging' : ''}, validation log loss ${r.chosen.fitted.valLoss.toFixed(4)}, accuracy ${(r.chosen.fitted.valAcc * 100).toFixed(2)}% (${r.trainCount} train / ${r.valCount} validation photos, ${r.outliers} outliers flagged)`);
      for (const c of r.candidates) {
        const name = c.views ? `${c.recipe} on ${c.views}${c.calibration ? `, calibration ${c.calibration}` : ''}` : `${c.recipe}${c.flip ? '+flip' : ''}`;
        out(`  candidate ${name}: ${c.views ? 'out-of-fold' : 'val'} log loss ${c.valLoss.toFixed(4)}, acc ${(c.valAcc * 100).toFixed(2)}%, fitted in ${c.seconds.toFixed(1)} s`);
      }
      for (const [src, m] of Object.entries(r.valBySource)) out(`  ${r.cv ? 'out of fold' : 'validation'} on ${src}: ${m.n} photos, log loss ${m.logloss.toFixed(4)}, accuracy ${(m.accuracy * 100).toFixed(2)}%`);
      out(`  curves: ${r.curvesPng}; outliers: ${r.outliersCsv}; ${((performance.now() - t0) / 1000).toFixed(0)} s in all`);
      if (values.promote) {
        const pr = await new Registry(config.model.registryDir).promote(r.modelId, { force: values.force });
        out(pr.promoted ? `promoted ${r.modelId} (${pr.reason})` : `not promoted: ${pr.reason}`);
      }
      if (values.json) out(JSON.stringify({ model: r.modelId, valLoss: r.chosen.fitted.valLoss, valAcc: r.chosen.fitted.valAcc, recipe: r.chosen.recipe, flip: r.chosen.flip, valBySource: r.valBySource, candidates: r.candidates }));
      return 0;
    } finally {
      await classifier.close();
    }
  });
}

/** The cross-validation flags of `catdog train --folds K`. */
export function cvOptions(v: { folds?: string; views?: string; 'train-views'?: string; pooling?: string; clean?: string; calibration?: string; stack?: string; neither?: string }): CvOptions {
  const bad = (m: string) => new CatdogError('usage', m);
  const folds = Number(v.folds);
  if (!Number.isInteger(folds) || folds < 2 || folds > 50) throw bad(`--folds must be an integer from 2 to 50, not ${v.folds}`);
  const o: CvOptions = { folds };
  if (v.views) o.views = parseViews(v.views);
  if (v['train-views']) o.trainViews = parseViews(v['train-views']);
  if (v.pooling) o.pooling = parsePooling(v.pooling);
  if (v.clean) {
    const [rule, t] = v.clean.split(':');
    if (rule !== 'none' && rule !== 'top10' && rule !== 'mass') throw bad(`--clean must be none, top10 or mass[:threshold], not ${v.clean}`);
    o.clean = rule;
    if (t !== undefined) {
      o.cleanMass = Number(t);
      if (!(o.cleanMass > 0 && o.cleanMass < 1)) throw bad(`--clean mass:T needs 0 < T < 1, not ${t}`);
    }
  }
  if (v.calibration) {
    if (!['auto', 'none', 'temperature', 'platt'].includes(v.calibration)) throw bad(`--calibration must be auto, none, temperature or platt, not ${v.calibration}`);
    o.calibration = v.calibration as CvOptions['calibration'];
  }
  if (v.stack) {
    if (!['auto', 'imagenet', 'none'].includes(v.stack)) throw bad(`--stack must be auto, imagenet or none, not ${v.stack}`);
    o.stack = v.stack as CvOptions['stack'];
  }
  if (v.neither) {
    const [rule, t] = v.neither.split(':');
    if (rule === 'top10' && t === undefined) o.neither = { rule: 'top10' };
    else if (rule === 'mass' && Number(t) > 0 && Number(t) < 1) o.neither = { rule: 'mass', threshold: Number(t) };
    else if (v.neither.endsWith('.json')) {
      // A rule file written by scripts/neither.ts (e.g. mass+novelty with its centroids).
      let r: NeitherRule;
      try {
        r = JSON.parse(readFileSync(v.neither, 'utf8')) as NeitherRule;
      } catch (e) {
        throw bad(`--neither ${v.neither}: ${(e as Error).message}`);
      }
      if (!validNeither(r)) throw bad(`--neither ${v.neither} is not a usable rule`);
      o.neither = r;
    } else throw bad(`--neither must be top10, mass:T with 0 < T < 1, or a rule file (.json), not ${v.neither}`);
  }
  return o;
}

export async function scoreCommand(argv: string[], config: Config): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { out: { type: 'string', default: 'submission.csv' }, labels: { type: 'string' }, json: { type: 'boolean', default: false }, worst: { type: 'string' } },
  });
  const sources = positionals.length ? positionals : config.data.test ? [config.data.test] : [];
  if (!sources.length) {
    err('usage: catdog score <test source> [--out submission.csv] [--labels test_labels.csv] [--json]');
    return 2;
  }
  return guarded(async (signal) => {
    const classifier = await Classifier.load({ model: config.model, log: err });
    err(`catdog: ${classifier.describe()}`);
    try {
      const p = progressPrinter(process.stderr, { ci: config.ci });
      const labels = values.labels ?? config.data.testLabels ?? undefined;
      const worstPng = labels ? resolve(values.worst ?? join(config.dataDir, 'reports', 'score', 'worst.png')) : undefined;
      if (worstPng) await mkdir(join(worstPng, '..'), { recursive: true });
      const r = await score({
        source: sources,
        classifier,
        cacheDir: defaultCacheDir(config.dataDir),
        out: resolve(values.out!),
        labels,
        worstPng,
        signal,
        onProgress: (x) => p.update(extractLine('score', x), x.done === x.total),
      });
      p.done();
      err(`wrote ${resolve(values.out!)}: ${r.n} rows${r.failures.length ? `, ${r.failures.length} unreadable (scored 0.5)` : ''}`);
      if (r.logloss !== undefined) {
        err(`log loss ${r.logloss.toFixed(4)}, accuracy ${(r.accuracy! * 100).toFixed(2)}%`);
        err(formatConfusion(r.confusion!));
        if (worstPng) err(`worst errors: ${worstPng}`);
      }
      if (values.json) {
        const metrics = r.logloss !== undefined ? { logloss: r.logloss, accuracy: r.accuracy } : {};
        out(JSON.stringify({ n: r.n, ...metrics, ms_per_image: Math.round(r.msPerImage * 10) / 10 }));
      }
      return 0;
    } finally {
      await classifier.close();
    }
  });
}

export async function modelCommand(argv: string[], config: Config): Promise<number> {
  const [sub, ...rest] = argv;
  const registry = new Registry(config.model.registryDir);
  try {
    if (sub === 'list' || sub === undefined) {
      const models = await registry.listModels();
      if (!models.length) out('no models in the registry yet: `catdog train --promote`');
      for (const m of models) {
        const metrics = m.head.meta?.metrics ?? {};
        out(`${m.active ? '*' : ' '} ${m.id}  ${m.head.backbones.join('+')}  ${String(m.head.meta?.recipe ?? '?')}${m.head.views ? ` views ${m.head.views.join('+')}` : m.head.tta === 'flip' ? '+flip' : ''}${m.head.pooling && m.head.pooling !== 'avg' ? ` ${m.head.pooling} pooling` : ''}  ${metrics.kind ?? 'val'} log loss ${metrics.valLoss?.toFixed(4) ?? '?'}  acc ${metrics.valAcc !== undefined ? (metrics.valAcc * 100).toFixed(2) + '%' : '?'}`);
      }
      return 0;
    }
    if (sub === 'use' && rest[0]) {
      await registry.useModel(rest[0]);
      out(`active model: ${rest[0]}`);
      return 0;
    }
    if (sub === 'rollback') {
      out(`active model: ${await registry.rollback()}`);
      return 0;
    }
    if (sub === 'promote' && rest[0]) {
      const r = await registry.promote(rest[0], { force: rest.includes('--force') });
      out(r.promoted ? `promoted ${rest[0]} (${r.reason})` : `not promoted: ${r.reason}`);
      return r.promoted ? 0 : 1;
    }
  } catch (e) {
    err(`catdog: ${describeError(e)}`);
    return 1;
  }
  err('usage: catdog model list | use ID | promote ID [--force] | rollback');
  return 2;
}

