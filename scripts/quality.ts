/**
 * The model-quality study of issue 11, on cached features only (run `catdog features ... --views`
 * first): k-fold cross-validation, grouped by photo, of each candidate step, each compared paired
 * with the step before it on the same photos (95% CI of the mean per-photo log-loss difference).
 *
 *   npx tsx scripts/quality.ts ../shared/data/dogs-vs-cats/train.zip ../shared/data/dogs-vs-cats/train-200px.zip \
 *     [--folds 5] [--views 224,224f,288,288f] [--mlp] [--stack] [--seed-recipe] [--out data/reports/quality]
 *
 * --stack adds H (the best head's OOF logit stacked with ResNet50's own ImageNet cat-vs-dog logit,
 * cross-fitted) and I (a probability clip chosen out of fold).
 *
 * Prints one line per step and writes quality.json (every candidate's OOF metrics, overall and on
 * the 200 px photos, and the paired comparisons). test.zip is not read.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Classifier } from '../src/model/classifier.ts';
import { imagenetDogLogit, isCatOrDogClass, topK } from '../src/model/imagenet.ts';
import { parseViews, viewCode, viewName } from '../src/model/views.ts';
import { loadConfig } from '../src/config.ts';
import { openDataset } from '../src/train/dataset.ts';
import {
  assignFolds,
  crossFitCalibration,
  crossFitClip,
  crossFitStack,
  formatPaired,
  meanRows,
  metricsOf,
  oofLinear,
  pairedCompare,
  probsOf,
  shuffledTrainFirst,
  trainRows,
  type LinearSpec,
  type ViewData,
} from '../src/train/cv.ts';
import { defaultCacheDir, hashSamples, imagenetFromStore, openFeatureStoreFor, viewData } from '../src/train/features.ts';
import { fitMlp } from '../src/train/mlp.ts';
import { fitSeedRecipe } from '../src/train/fit.ts';
import { catDogMass } from '../src/model/neither.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    folds: { type: 'string', default: '5' },
    views: { type: 'string', default: '224,224f,288,288f' },
    l2: { type: 'string', default: '0.1,0.03,0.01,0.003' },
    mlp: { type: 'boolean', default: false },
    'mlp-epochs': { type: 'string', default: '12' },
    'seed-recipe': { type: 'boolean', default: false },
    out: { type: 'string' },
    limit: { type: 'string' },
    prefix: { type: 'boolean', default: false },
    stack: { type: 'boolean', default: false },
  },
});
const log = (s: string) => process.stdout.write(`${s}\n`);
const config = loadConfig();
const K = Number(values.folds);
const l2 = values.l2!.split(',').map(Number);
const outDir = resolve(values.out ?? join(config.dataDir, 'reports', 'quality'));

const classifier = await Classifier.load({ model: config.model, head: null });
const info = classifier.info().backboneInfo;
await classifier.close();
const store = openFeatureStoreFor(info, defaultCacheDir(config.dataDir), { readOnly: true });
const ds = await openDataset(positionals, { kind: 'train' });
let labelled = ds.samples.filter((s) => s.label !== null);
if (values.limit) labelled = labelled.filter((_, i) => i % Math.ceil(labelled.length / Number(values.limit)) === 0);
const allViews = parseViews(values.views!);
// --prefix: the photos in `catdog features --shuffle`'s seeded order up to the first one with a
// view not cached yet: a random sample of the training photos while an extraction still runs.
let hashed = await hashSamples(values.prefix ? shuffledTrainFirst(labelled) : labelled);
if (values.prefix) {
  const end = hashed.ok.findIndex((it) => allViews.some((v) => !store.caches.get('resnet50')!.has(it.hash, viewCode(v))));
  if (end >= 0) hashed = { ...hashed, ok: hashed.ok.slice(0, end) };
  log(`random prefix of the shuffled order: ${hashed.ok.length} photos`);
}
const { data, items, missing } = viewData(store, hashed.ok, allViews);
log(`${data.n} photos with every view of ${allViews.map(viewName).join(',')} (${missing} left out: a view not cached yet); ${K} folds, grouped by content hash`);
const folds = assignFolds(data.groups, data.y, K);
const v = (name: string) => {
  const i = allViews.findIndex((x) => viewName(x) === name);
  if (i < 0) throw new Error(`view ${name} not loaded`);
  return i;
};
const has = (name: string) => allViews.some((x) => viewName(x) === name);
const small = items.map((it, i) => (basename(it.sample.source).includes('200px') ? i : -1)).filter((i) => i >= 0);

// ImageNet top of each photo at 224 (cleaning rules, "neither").
const probs224 = items.map((it) => store.imagenet!.get(it.hash, 0));
const top10Flag = new Set(items.map((_, i) => i).filter((i) => probs224[i] && !topK(probs224[i]!, 10).some((g) => isCatOrDogClass(g.index))));
const mass = items.map((_, i) => (probs224[i] ? catDogMass(probs224[i]!) : 1));
/** ImageNet's own cat-vs-dog logit over the non-mirrored views cached (imagenet.ts, as a stacked head computes it). */
const imagenetDogLogitOf = (i: number): number => imagenetDogLogit(imagenetFromStore(store, items[i]!.hash, allViews));

interface Row {
  name: string;
  l2?: number;
  logits: Float64Array;
  p: Float64Array;
  all: ReturnType<typeof metricsOf>;
  px200: ReturnType<typeof metricsOf>;
  seconds: number;
}
const rows: Row[] = [];
const comparisons: { step: string; base: string; all: ReturnType<typeof pairedCompare>; px200: ReturnType<typeof pairedCompare> }[] = [];

/** p: the probabilities scored (default: the logits' own; a clip changes them, not the logits). */
function record(name: string, logits: Float64Array, seconds: number, extra: Partial<Row> = {}, p = probsOf(logits)): Row {
  const r: Row = { name, logits, p, all: metricsOf(data.y, p), px200: metricsOf(data.y, p, small), seconds, ...extra };
  rows.push(r);
  log(`${name}: OOF log loss ${r.all.logloss.toFixed(4)}, accuracy ${(r.all.accuracy * 100).toFixed(2)}%; 200 px photos ${r.px200.logloss.toFixed(4)} / ${(r.px200.accuracy * 100).toFixed(2)}%${r.l2 !== undefined ? `; l2 ${r.l2}` : ''} (${seconds.toFixed(0)} s)`);
  return r;
}

function compare(step: string, base: Row, next: Row) {
  const all = pairedCompare(data.y, base.p, next.p);
  const px200 = pairedCompare(data.y, base.p, next.p, small);
  comparisons.push({ step, base: base.name, all, px200 });
  log(`  paired, ${step}: all ${formatPaired(all)}`);
  log(`  paired, ${step}: 200 px ${formatPaired(px200)}`);
}

/** The best L2 strength of a linear spec, by OOF log loss. */
function linear(name: string, spec: LinearSpec): Row {
  const r = oofLinear(data, folds, spec);
  let best = 0;
  const losses = r.logits.map((z) => metricsOf(data.y, probsOf(z)).logloss);
  losses.forEach((l, i) => (l < losses[best]! ? (best = i) : 0));
  log(`  ${name}: OOF log loss by l2 ${spec.l2.map((s, i) => `${s}: ${losses[i]!.toFixed(4)}`).join(', ')}`);
  return record(name, r.logits[best]!, r.seconds, { l2: spec.l2[best] });
}

const base = linear('A. logreg, views 224+224f (today)', { answerViews: [v('224'), v('224f')], train: 'mean', l2 });
let last = base;
/** C (the shipped views) and D2 (+ a 352 px view), kept for the stacked comparison of the two. */
let cRow: Row | null = null;
let d2Row: Row | null = null;
let d3Row: Row | null = null;
if (has('288')) {
  const b = linear('B. + view 288 (answer 224,224f,288)', { answerViews: [v('224'), v('224f'), v('288')], train: 'mean', l2 });
  compare('B vs A', last, b);
  last = b;
  const augViews = has('288f') ? [v('224'), v('224f'), v('288'), v('288f')] : [v('224'), v('224f'), v('288')];
  const c = linear(`C. + views as training augmentation (${augViews.map((i) => viewName(allViews[i]!)).join(',')})`, {
    answerViews: [v('224'), v('224f'), v('288')],
    train: 'each',
    trainViews: augViews,
    l2,
  });
  compare('C vs B', last, c);
  cRow = c;
  if (c.all.logloss < last.all.logloss) last = c;
  if (has('352')) {
    // ResNet50 pools any size: the 200 px photos upscaled further than 288.
    const views352 = [v('224'), v('224f'), v('288'), v('352')];
    d2Row = linear('D2. + view 352 (answer 224,224f,288,352; views as augmentation)', { answerViews: views352, train: 'each', trainViews: [...augViews, v('352')], l2 });
    compare('D2 vs C', c, d2Row);
    if (has('416')) {
      d3Row = linear('D3. + view 416 (answer 224,224f,288,352,416; views as augmentation)', { answerViews: [...views352, v('416')], train: 'each', trainViews: [...augViews, v('352'), v('416')], l2 });
      compare('D3 vs D2', d2Row, d3Row);
    }
  }
  if (has('288f')) {
    const d = linear('D. answer 4 views (224,224f,288,288f; over the latency budget)', { answerViews: augViews, train: 'each', trainViews: augViews, l2 });
    compare('D vs C', c, d);
  }
}
const bestSpecName = last.name;
const bestSpec: LinearSpec = bestSpecName.startsWith('C')
  ? { answerViews: [v('224'), v('224f'), v('288')], train: 'each', trainViews: has('288f') ? [v('224'), v('224f'), v('288'), v('288f')] : [v('224'), v('224f'), v('288')], l2: [last.l2!] }
  : bestSpecName.startsWith('B')
    ? { answerViews: [v('224'), v('224f'), v('288')], train: 'mean', l2: [last.l2!] }
    : { answerViews: [v('224'), v('224f')], train: 'mean', l2: [last.l2!] };

// Cleaning: leave flagged photos out of training; every photo is still predicted and scored.
log(`cleaning: top-10 rule flags ${top10Flag.size}; probability-mass rule (cat+dog classes < 0.05) flags ${mass.filter((m) => m < 0.05).length}, (< 0.01) ${mass.filter((m) => m < 0.01).length}`);
const e1 = linear(`E1. ${last.name.slice(0, 2)} trained without the top-10 outliers`, { ...bestSpec, l2, exclude: top10Flag });
compare('E1 (top-10 cleaning) vs kept', last, e1);
const massFlag = new Set(mass.map((m, i) => (m < 0.01 ? i : -1)).filter((i) => i >= 0));
const e2 = linear(`E2. ${last.name.slice(0, 2)} trained without mass < 0.01 photos`, { ...bestSpec, l2, exclude: massFlag });
compare('E2 (mass cleaning) vs kept', last, e2);
for (const e of [e1, e2]) if (e.all.logloss < last.all.logloss) last = e;

// Calibration, cross-fitted over the folds on the OOF logits.
for (const kind of ['temperature', 'platt'] as const) {
  const z = crossFitCalibration(last.logits, data.y, folds, kind);
  const r = record(`F. ${last.name.slice(0, 3)} + ${kind} calibration (cross-fitted)`, z, 0, { l2: last.l2 });
  compare(`F ${kind} vs uncalibrated`, last, r);
}

if (values.stack) {
  // H. Stacking, cross-fitted: the head's OOF logit with ImageNet's own cat-vs-dog logit (fc1000,
  // already computed for "neither"), P = sigmoid(a·z + c·z_imagenet + b).
  const zi = Float64Array.from(items, (_, i) => imagenetDogLogitOf(i));
  record('H0. ImageNet cat-vs-dog logit alone (cross-fitted Platt)', crossFitStack([zi], data.y, folds), 0);
  const h = record(`H. ${last.name.slice(0, 3)} stacked with the ImageNet cat-vs-dog logit (cross-fitted)`, crossFitStack([last.logits, zi], data.y, folds), 0, { l2: last.l2 });
  compare('H stacked vs head alone', last, h);
  const best = h.all.logloss < last.all.logloss ? h : last;
  const c = crossFitClip(data.y, best.p, folds);
  const rc = record(`I. ${best.name.slice(0, 3)} + probability clip (cross-fitted, eps per fold ${c.eps.join('/')})`, best.logits, 0, {}, c.p);
  compare('I clip vs unclipped', best, rc);
  if (cRow && d2Row) {
    // Each stacked with the ImageNet logit of its own unmirrored views (C: 224, 288; D2: + 352).
    const own = (names: string[]) => Float64Array.from(items, (_, i) => imagenetDogLogit(imagenetFromStore(store, items[i]!.hash, names.map((n) => allViews[v(n)]!))));
    const hc = record('HC. C stacked (ImageNet logit of 224, 288)', crossFitStack([cRow.logits, own(['224', '288'])], data.y, folds), 0, { l2: cRow.l2 });
    const hd = record('HD2. D2 stacked (ImageNet logit of 224, 288, 352)', crossFitStack([d2Row.logits, own(['224', '288', '352'])], data.y, folds), 0, { l2: d2Row.l2 });
    compare('HD2 vs HC (stacked, + view 352)', hc, hd);
    if (d3Row) {
      const hd3 = record('HD3. D3 stacked (ImageNet logit of 224, 288, 352, 416)', crossFitStack([d3Row.logits, own(['224', '288', '352', '416'])], data.y, folds), 0, { l2: d3Row.l2 });
      compare('HD3 vs HD2 (stacked, + view 416)', hd, hd3);
    }
  }
}

if (values['seed-recipe']) {
  const t0 = performance.now();
  const z = new Float64Array(data.n);
  for (let f = 0; f < K; f++) {
    const tr = [...Array(data.n).keys()].filter((i) => folds[i] !== f);
    const te = [...Array(data.n).keys()].filter((i) => folds[i] === f);
    const rowsTr = trainRows(data, tr, { answerViews: [v('224'), v('224f')], train: 'mean', l2: [] });
    // The seed recipe's fixed 8 epochs on 95% of the training folds (its Keras-style split keeps 5% for its curves).
    const fitted = await fitSeedRecipe({ x: rowsTr.x, y: rowsTr.y, n: rowsTr.n, d: data.d }, { validationSplit: 0.05 });
    const x = meanRows(data, te, [v('224'), v('224f')]);
    te.forEach((i, r) => {
      let s = fitted.bias;
      for (let j = 0; j < data.d; j++) s += fitted.kernel[j]! * x[r * data.d + j]!;
      z[i] = s;
    });
  }
  const r = record('S. seed recipe (Dropout 0.5 + Dense, Adadelta, 8 epochs), 224+224f', z, (performance.now() - t0) / 1000);
  compare('seed recipe vs A', base, r);
}

if (values.mlp) {
  const t0 = performance.now();
  const z = new Float64Array(data.n);
  for (let f = 0; f < K; f++) {
    const tr = [...Array(data.n).keys()].filter((i) => folds[i] !== f && !(bestSpec.exclude?.has(i) ?? false));
    const te = [...Array(data.n).keys()].filter((i) => folds[i] === f);
    const rowsTr = trainRows(data, tr, bestSpec);
    const m = await fitMlp(rowsTr.x, rowsTr.y, rowsTr.n, data.d, { epochs: Number(values['mlp-epochs']), hidden: 256, dropout: 0.5, l2: 1e-4 });
    // Mean of the answer views' logits (the MLP is not linear, so this is not the mean of features).
    const acc = new Float64Array(te.length);
    for (const av of bestSpec.answerViews) {
      const zv = await m.logits(meanRows(data, te, [av]), te.length);
      zv.forEach((val, r) => (acc[r]! += val / bestSpec.answerViews.length));
    }
    te.forEach((i, r) => (z[i] = acc[r]!));
    m.dispose();
    log(`  MLP fold ${f + 1}/${K} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  }
  const r = record(`G. MLP 2048-256-1 (dropout 0.5, Adam, ${values['mlp-epochs']} epochs) on ${last.name.slice(0, 2)}'s views`, z, (performance.now() - t0) / 1000);
  compare('G MLP vs best linear', last, r);
  const zc = crossFitCalibration(z, data.y, folds, 'temperature');
  const rc = record('G+F. MLP + temperature (cross-fitted)', zc, 0);
  compare('G+F vs best linear', last, rc);
}

await mkdir(outDir, { recursive: true });
const json = {
  photos: data.n,
  missing,
  folds: K,
  views: allViews.map(viewName),
  candidates: rows.map((r) => ({ name: r.name, l2: r.l2, all: r.all, px200: r.px200, seconds: r.seconds })),
  comparisons,
};
await writeFile(join(outDir, 'quality.json'), JSON.stringify(json, null, 1));
log(`wrote ${join(outDir, 'quality.json')}`);
store.close();
await ds.close();
void ({} as ViewData);
