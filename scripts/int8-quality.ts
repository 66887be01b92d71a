/**
 * `npx tsx scripts/int8-quality.ts [--photos N] [--folds 5] [--no-flip] SOURCE...`
 *
 * The quality bound of int8 backbones, paired: the same photos, the same folds, the same head
 * recipe (L2 logistic regression, strength chosen on the recipe's own 20% split inside each
 * training fold), fitted once on fp32 and once on int8 features. Prints the out-of-fold log loss
 * and accuracy of each, their difference (per fold and overall), and the transfer case: heads
 * fitted on fp32 features scoring int8 features. Features come from (and go to) the feature cache
 * under DATA_DIR, so a rerun computes nothing twice. ResNet50 only: the one backbone with real
 * ImageNet weights here.
 */
import { parseArgs } from 'node:util';
import { Classifier } from '../src/model/classifier.ts';
import { loadConfig } from '../src/config.ts';
import { openDataset } from '../src/train/dataset.ts';
import { defaultCacheDir, extractFeatures, openFeatureStore, trainingSet, type ExtractedSample } from '../src/train/features.ts';
import { fitLogreg, predictLinear, shuffledIndices, type TrainingSet } from '../src/train/fit.ts';
import { accuracy, logLoss } from '../src/train/metrics.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { photos: { type: 'string' }, folds: { type: 'string', default: '5' }, 'no-flip': { type: 'boolean', default: false }, seed: { type: 'string', default: '2018' } },
});
const flip = !values['no-flip'];
const folds = Number(values.folds);
const seed = Number(values.seed);
const ds = await openDataset(positionals, { kind: 'train' });
let samples = ds.samples.filter((s) => s.label !== null);
if (values.photos) {
  const idx = shuffledIndices(samples.length, seed);
  samples = Array.from(idx.subarray(0, Number(values.photos)), (i) => samples[i]);
}
const config = loadConfig();
const cacheDir = defaultCacheDir(config.dataDir);
const extracted = new Map<string, ExtractedSample[]>();
const sets = new Map<string, TrainingSet>();
for (const precision of ['fp32', 'int8'] as const) {
  const c = await Classifier.load({ model: config.model, backbones: ['resnet50'], head: null, precision, log: (l) => console.error(l) });
  console.error(`${precision}: ${c.describe()}`);
  let last = 0;
  const r = await extractFeatures(samples, c, {
    cacheDir,
    flip,
    onProgress: (p) => {
      if (p.done - last >= 500 || p.done === p.total) {
        last = p.done;
        console.error(`${precision}: ${p.done}/${p.total} (${p.cached} cached, ${p.imgPerSec.toFixed(1)} photos/s)`);
      }
    },
  });
  extracted.set(precision, r.ok);
  const store = openFeatureStore(c, cacheDir);
  sets.set(precision, trainingSet(store, r.ok, flip));
  store.close();
  await c.close();
}
await ds.close();
const a = extracted.get('fp32')!.map((x) => x.hash).join();
if (a !== extracted.get('int8')!.map((x) => x.hash).join()) throw new Error('fp32 and int8 extracted different photos');
const fp32 = sets.get('fp32')!;
const int8 = sets.get('int8')!;
const n = fp32.n;
const perm = shuffledIndices(n, seed);
const fold = new Uint8Array(n);
for (const [i, k] of perm.entries()) fold[k] = i % folds;
const take = (s: TrainingSet, keep: (i: number) => boolean): TrainingSet => {
  const ids = [...Array(n).keys()].filter(keep);
  const x = new Float32Array(ids.length * s.d);
  const y = new Uint8Array(ids.length);
  ids.forEach((k, i) => {
    x.set(s.x.subarray(k * s.d, (k + 1) * s.d), i * s.d);
    y[i] = s.y[k];
  });
  return { x, y, n: ids.length, d: s.d };
};
const oof = { fp32: new Float64Array(n), int8: new Float64Array(n), transfer: new Float64Array(n) };
const perFold: string[] = [];
for (let f = 0; f < folds; f++) {
  const heads: Record<string, ReturnType<typeof fitLogreg>> = {};
  for (const [name, s] of [['fp32', fp32], ['int8', int8]] as const) {
    const t0 = performance.now();
    heads[name] = fitLogreg(take(s, (i) => fold[i] !== f), { seed });
    const test = take(s, (i) => fold[i] === f);
    const p = predictLinear(test, heads[name].kernel, heads[name].bias, heads[name].mean, heads[name].scale);
    let k = 0;
    for (let i = 0; i < n; i++) if (fold[i] === f) oof[name][i] = p[k++];
    console.error(`fold ${f + 1}/${folds} ${name}: l2 ${heads[name].params.l2}, fold log loss ${logLoss(test.y, p).toFixed(4)} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  }
  const test = take(int8, (i) => fold[i] === f);
  const h = heads.fp32;
  const p = predictLinear(test, h.kernel, h.bias, h.mean, h.scale);
  let k = 0;
  for (let i = 0; i < n; i++) if (fold[i] === f) oof.transfer[i] = p[k++];
  const idx = [...Array(n).keys()].filter((i) => fold[i] === f);
  const ys = idx.map((i) => fp32.y[i]);
  const l = (o: Float64Array) => logLoss(ys, idx.map((i) => o[i]));
  perFold.push(`fold ${f + 1}: fp32 ${l(oof.fp32).toFixed(4)}  int8 ${l(oof.int8).toFixed(4)}  int8 - fp32 ${(l(oof.int8) - l(oof.fp32)).toFixed(4)}  fp32 head on int8 ${l(oof.transfer).toFixed(4)}`);
}
const y = fp32.y;
const result = {
  photos: n,
  folds,
  flip,
  fp32: { logloss: logLoss(y, oof.fp32), accuracy: accuracy(y, oof.fp32) },
  int8: { logloss: logLoss(y, oof.int8), accuracy: accuracy(y, oof.int8) },
  fp32_head_on_int8: { logloss: logLoss(y, oof.transfer), accuracy: accuracy(y, oof.transfer) },
};
for (const line of perFold) console.log(line);
console.log(
  `out-of-fold log loss on ${n} photos, ${folds} folds${flip ? ', flip averaging' : ''}: fp32 ${result.fp32.logloss.toFixed(4)} (acc ${(result.fp32.accuracy * 100).toFixed(2)}%), ` +
    `int8 ${result.int8.logloss.toFixed(4)} (acc ${(result.int8.accuracy * 100).toFixed(2)}%), difference ${(result.int8.logloss - result.fp32.logloss).toFixed(4)}; ` +
    `fp32 heads on int8 features: ${result.fp32_head_on_int8.logloss.toFixed(4)} (acc ${(result.fp32_head_on_int8.accuracy * 100).toFixed(2)}%)`,
);
console.log(JSON.stringify(result));
