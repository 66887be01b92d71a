/**
 * What the shipped head gets wrong, and whether a richer stack fixes it. One view set, trained as
 * `catdog train` ships it (one row per view, top-10 photos left out of training, L2 0.01), 5-fold
 * out of fold on cached features; then several stacks, each cross-fitted on the same folds and
 * compared paired with the shipped stack ([head logit, ImageNet cat-vs-dog logit]):
 *
 *   per-view   each answer view's own head logit and ImageNet logit (2 columns per view)
 *   mass       the shipped two, plus log(dog mass) and log(cat mass) of ImageNet's mean probabilities
 *   --extra V  per other cached view V: its ImageNet logit as a third column, and a head trained on V alone
 *
 * and, asked for, other heads on the same rows, stacked as shipped:
 *
 *   --transforms sqrt,pow75,log1p   the features (signed) square-rooted, to the 0.75th power, log1p'd first
 *   --mlp EPOCHS                    mlp.ts's MLP (dropout 0.2, 256 relu, dropout 0.5), alone and beside the
 *                                   linear head; slow: a fold of 28,800 rows x 4,096 takes about 7 min on 2 idle cores
 *
 * It also writes every photo's out-of-fold probability to data/reports/oof.csv and prints how the
 * 200 px photos' errors spread over confidence and cleaning.
 *
 *   npx tsx scripts/head-study.ts ../shared/data/dogs-vs-cats/train.zip ../shared/data/dogs-vs-cats/train-200px.zip \
 *     [--views 288,416,448] [--pooling avg+max] [--l2 0.01] [--extra 224,352] [--transforms sqrt] [--mlp 12]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config.ts';
import { Classifier } from '../src/model/classifier.ts';
import { CAT_CLASSES, DOG_CLASSES, imagenetDogLogit } from '../src/model/imagenet.ts';
import { parsePooling } from '../src/model/pooling.ts';
import { parseViews, viewName } from '../src/model/views.ts';
import { findOutliers } from '../src/train/clean.ts';
import { assignFolds, crossFitStack, formatPaired, meanRows, metricsOf, oofLinear, pairedCompare, probsOf, trainRows } from '../src/train/cv.ts';
import { fitMlp } from '../src/train/mlp.ts';
import { openDataset } from '../src/train/dataset.ts';
import { defaultCacheDir, hashSamples, imagenetFromStore, openFeatureStoreFor, viewData } from '../src/train/features.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    views: { type: 'string', default: '288,416,448' },
    pooling: { type: 'string', default: 'avg+max' },
    l2: { type: 'string', default: '0.01' },
    transforms: { type: 'string', default: '' },
    mlp: { type: 'string', default: '0' },
    extra: { type: 'string', default: '' },
  },
});
const log = (s: string) => process.stdout.write(`${s}\n`);
const config = loadConfig();
const classifier = await Classifier.load({ model: config.model, head: null });
const info = classifier.info().backboneInfo;
await classifier.close();
const store = openFeatureStoreFor(info, defaultCacheDir(config.dataDir), { readOnly: true });
const ds = await openDataset(positionals, { kind: 'train' });
const hashed = await hashSamples(ds.samples.filter((s) => s.label !== null));
const views = parseViews(values.views!);
// --extra: other cached views, each given its own head (trained on that view alone) and ImageNet logit, stacked as extra columns.
const extra = values.extra ? parseViews(values.extra) : [];
const { data, items, missing } = viewData(store, hashed.ok, [...views, ...extra], parsePooling(values.pooling!));
log(`${data.n} photos with every view of ${views.map(viewName).join(',')} (${missing} left out); 5 folds, grouped by content hash`);
const folds = assignFolds(data.groups, data.y, 5);
const small = items.map((it, i) => (basename(it.sample.source).includes('200px') ? i : -1)).filter((i) => i >= 0);
const flagged = new Set(findOutliers(store, items, null).map((o) => o.item.hash));
const top10 = new Set(items.flatMap((it, i) => (flagged.has(it.hash) ? [i] : [])));
const vs = views.map((_, i) => i);
const r = oofLinear(data, folds, { answerViews: vs, train: 'each', l2: [Number(values.l2)], exclude: top10 }, { perView: true });
log(`head fitted out of fold in ${r.seconds.toFixed(0)} s`);
const z = r.logits[0]!;
const zv = r.viewLogits![0]!;
const probs = items.map((it) => imagenetFromStore(store, it.hash, views));
const zi = Float64Array.from(probs, (p) => imagenetDogLogit(p));
const ziv = views.map((_, k) => Float64Array.from(probs, (p) => (p[k] ? imagenetDogLogit([p[k]!]) : 0)));
const mass = (first: number, last: number) =>
  Float64Array.from(probs, (p) => {
    let s = 0;
    for (const q of p) for (let c = first; c <= last; c++) s += q[c]!;
    return Math.log(s / Math.max(1, p.length) + 1e-6);
  });

const stacks: [string, ArrayLike<number>[]][] = [
  ['shipped [z, zi]', [z, zi]],
  ['per-view [z_v, zi_v]', [...zv, ...ziv]],
  ['mass [z, zi, log dog, log cat]', [z, zi, mass(DOG_CLASSES.first, DOG_CLASSES.last), mass(CAT_CLASSES.first, CAT_CLASSES.last)]],
  ['head alone [z]', [z]],
];
for (const [k, v] of extra.entries()) {
  const re = oofLinear(data, folds, { answerViews: [views.length + k], train: 'each', l2: [Number(values.l2)], exclude: top10 });
  const zie = Float64Array.from(items, (it) => imagenetDogLogit(imagenetFromStore(store, it.hash, [v])));
  stacks.push([`+ ${viewName(v)} ImageNet [z, zi, zi_${viewName(v)}]`, [z, zi, zie]]);
  stacks.push([`+ ${viewName(v)} head [z, zi, z_${viewName(v)}, zi_${viewName(v)}]`, [z, zi, re.logits[0]!, zie]]);
}
const results = stacks.map(([name, cols]) => {
  const p = probsOf(crossFitStack(cols, data.y, folds));
  const a = metricsOf(data.y, p);
  const s = metricsOf(data.y, p, small);
  log(`${name.padEnd(32)} OOF ${a.logloss.toFixed(4)}, ${(100 * a.accuracy).toFixed(2)}%; 200 px ${s.logloss.toFixed(4)}, ${(100 * s.accuracy).toFixed(2)}%`);
  return p;
});
for (const [k, p] of results.entries()) {
  if (k === 0) continue;
  log(`  ${stacks[k]![0]} vs shipped: all ${formatPaired(pairedCompare(data.y, results[0]!, p))}`);
  log(`  ${stacks[k]![0]} vs shipped: 200 px ${formatPaired(pairedCompare(data.y, results[0]!, p, small))}`);
}

// Feature transforms before the head (each view's row, then averaged at answer time), stacked as shipped.
const transforms: Record<string, (v: number) => number> = {
  sqrt: (v) => Math.sign(v) * Math.sqrt(Math.abs(v)),
  log1p: (v) => Math.sign(v) * Math.log1p(Math.abs(v)),
  pow75: (v) => Math.sign(v) * Math.abs(v) ** 0.75,
};
for (const t of (values.transforms || '').split(',').filter(Boolean)) {
  const fn = transforms[t];
  if (!fn) throw new Error(`unknown transform ${t}: ${Object.keys(transforms).join(', ')}`);
  const td = { ...data, x: data.x.map((x) => Float32Array.from(x, fn)) };
  const rt = oofLinear(td, folds, { answerViews: vs, train: 'each', l2: [Number(values.l2)], exclude: top10 });
  const p = probsOf(crossFitStack([rt.logits[0]!, zi], data.y, folds));
  const a = metricsOf(data.y, p);
  const s = metricsOf(data.y, p, small);
  log(
    `transform ${t.padEnd(22)} OOF ${a.logloss.toFixed(4)}, ${(100 * a.accuracy).toFixed(2)}%; 200 px ${s.logloss.toFixed(4)}, ${(100 * s.accuracy).toFixed(2)}% (${rt.seconds.toFixed(0)} s)`,
  );
  log(`  vs shipped: all ${formatPaired(pairedCompare(data.y, results[0]!, p))}`);
  log(`  vs shipped: 200 px ${formatPaired(pairedCompare(data.y, results[0]!, p, small))}`);
}

// A small MLP head (mlp.ts: dropout 0.2 → 256 relu → dropout 0.5 → 1), the same rows, out of fold;
// stacked alone and together with the linear head.
const mlpEpochs = Number(values.mlp);
if (mlpEpochs > 0) {
  const zm = new Float64Array(data.n);
  for (let f = 0; f < 5; f++) {
    const t0 = performance.now();
    const tr: number[] = [];
    const te: number[] = [];
    for (let i = 0; i < data.n; i++) {
      if (folds[i] === f) te.push(i);
      else if (!top10.has(i)) tr.push(i);
    }
    const rows = trainRows(data, tr, { answerViews: vs, train: 'each', l2: [] });
    const m = await fitMlp(rows.x, rows.y, rows.n, data.d, { epochs: mlpEpochs, hidden: 256, dropout: 0.5, l2: 1e-4, seed: 2018 + f });
    const out = await m.logits(meanRows(data, te, vs), te.length);
    te.forEach((i, k) => (zm[i] = out[k]!));
    m.dispose();
    log(`  MLP fold ${f + 1}/5: ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  for (const [name, cols] of [
    ['MLP stacked [zm, zi]', [zm, zi]],
    ['both stacked [z, zm, zi]', [z, zm, zi]],
  ] as const) {
    const p = probsOf(crossFitStack(cols, data.y, folds));
    const a = metricsOf(data.y, p);
    const s = metricsOf(data.y, p, small);
    log(`${name.padEnd(32)} OOF ${a.logloss.toFixed(4)}, ${(100 * a.accuracy).toFixed(2)}%; 200 px ${s.logloss.toFixed(4)}, ${(100 * s.accuracy).toFixed(2)}%`);
    log(`  vs shipped: all ${formatPaired(pairedCompare(data.y, results[0]!, p))}`);
    log(`  vs shipped: 200 px ${formatPaired(pairedCompare(data.y, results[0]!, p, small))}`);
  }
}

// Where the shipped stack's 200 px errors lie.
const p0 = results[0]!;
const wrong = small.filter((i) => (p0[i]! >= 0.5 ? 1 : 0) !== data.y[i]);
const bins = [0.5, 0.8, 0.95, 0.99, 1.0001];
const counts = bins.slice(0, -1).map(
  (lo, b) =>
    wrong.filter((i) => {
      const conf = Math.max(p0[i]!, 1 - p0[i]!);
      return conf >= lo && conf < bins[b + 1]!;
    }).length,
);
log(
  `200 px: ${wrong.length} wrong of ${small.length}; by confidence in the wrong answer ${bins
    .slice(0, -1)
    .map((lo, b) => `[${lo}, ${Math.min(1, bins[b + 1]!)}): ${counts[b]}`)
    .join(', ')}; ${wrong.filter((i) => top10.has(i)).length} of them flagged by the top-10 rule`,
);
const rows = ['file,label,p_dog,wrong,flagged'];
items.forEach((it, i) =>
  rows.push([it.sample.key, data.y[i], p0[i]!.toFixed(5), (p0[i]! >= 0.5 ? 1 : 0) !== data.y[i] ? 1 : 0, top10.has(i) ? 1 : 0].join(',')),
);
await mkdir(join(config.dataDir, 'reports'), { recursive: true });
await writeFile(join(config.dataDir, 'reports', 'oof.csv'), `${rows.join('\n')}\n`);
log(`every photo's OOF probability: ${join(config.dataDir, 'reports', 'oof.csv')}`);
store.close();
await ds.close();
