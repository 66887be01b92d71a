/**
 * Which views (and pooling) should a head answer on? Each candidate view set, as `catdog train` ships it
 * (one training row per view, top-10 photos left out of training, L2 0.01, stacked with the
 * ImageNet cat-vs-dog logit of its unmirrored views, cross-fitted), 5-fold out of fold on cached
 * features, compared paired with a base set on the same photos (overall and on the 200 px photos).
 *
 *   npx tsx scripts/views-compare.ts ../shared/data/dogs-vs-cats/train.zip ../shared/data/dogs-vs-cats/train-200px.zip \
 *     [--base 224,224f,288,352,416] [--candidates "224,288,352,416;288,352,416;224f,288,352,416"] [--l2 0.01]
 *
 * A set may name its pooling after an @ (pooling.ts; default avg): "288,352,416@avg+max", and after a
 * second @ which photos it trains on: "top10" (the default: the rule's photos left out) or "all".
 * The views it is trained on (one row each) may differ from those it answers on, after a colon:
 * "288,352,416:224f,288,352,416,448@avg+max" answers on three views and trains on five.
 * Every view of every set must be cached (`catdog features ... --views`). test.zip is not read.
 */
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config.ts';
import { Classifier } from '../src/model/classifier.ts';
import { imagenetDogLogit } from '../src/model/imagenet.ts';
import { findOutliers } from '../src/train/clean.ts';
import { parseViews, viewName } from '../src/model/views.ts';
import { parsePooling } from '../src/model/pooling.ts';
import { assignFolds, crossFitStack, formatPaired, metricsOf, oofLinear, pairedCompare, probsOf } from '../src/train/cv.ts';
import { openDataset } from '../src/train/dataset.ts';
import { defaultCacheDir, hashSamples, imagenetFromStore, openFeatureStoreFor, viewData } from '../src/train/features.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    base: { type: 'string', default: '224,224f,288,352,416' },
    candidates: { type: 'string', default: '224,288,352,416;288,352,416;224f,288,352,416' },
    l2: { type: 'string', default: '0.01' },
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
const sets = [values.base!, ...values.candidates!.split(';').filter((s) => s.trim())].map((s) => {
  const [views, pooling, clean = 'top10'] = s.split('@');
  if (clean !== 'top10' && clean !== 'all') throw new Error(`"${s}": after the pooling, name "top10" or "all" (which photos to train on)`);
  const [answer, train] = views!.split(':');
  const names = parseViews(answer!).map(viewName);
  return { names, trainNames: train ? parseViews(train).map(viewName) : names, pooling: parsePooling(pooling || 'avg'), clean };
});
const label = (set: (typeof sets)[number]) =>
  `${set.names.join(',')}${set.trainNames.join(',') === set.names.join(',') ? '' : `:${set.trainNames.join(',')}`}${set.pooling === 'avg' && set.clean === 'top10' ? '' : `@${set.pooling}`}${set.clean === 'top10' ? '' : `@${set.clean}`}`;
const allViews = parseViews([...new Set(sets.flatMap((s) => [...s.names, ...s.trainNames]))]);
// One matrix per pooling, of the same photos: the widest pooling's photos (a photo missing any view
// or pooling is left out of all).
const poolings = [...new Set(sets.map((s) => s.pooling))];
const widest = poolings.includes('avg+max') ? 'avg+max' : 'avg';
const { data, items, missing } = viewData(store, hashed.ok, allViews, widest);
const matrices = new Map(poolings.map((p) => [p, p === widest ? data : viewData(store, items, allViews, p).data]));
log(`${data.n} photos with every view of ${allViews.map(viewName).join(',')} (${missing} left out: a view not cached); 5 folds, grouped by content hash`);
const folds = assignFolds(data.groups, data.y, 5);
const small = items.map((it, i) => (basename(it.sample.source).includes('200px') ? i : -1)).filter((i) => i >= 0);
const flagged = new Set(findOutliers(store, items, null).map((o) => o.item.hash));
const top10 = new Set(items.flatMap((it, i) => (flagged.has(it.hash) ? [i] : [])));
const l2 = Number(values.l2);

function run(set: (typeof sets)[number]): Float64Array {
  const at = (n: string) => allViews.findIndex((v) => viewName(v) === n);
  const vs = set.names.map(at);
  const r = oofLinear(matrices.get(set.pooling)!, folds, { answerViews: vs, train: 'each', trainViews: set.trainNames.map(at), l2: [l2], exclude: set.clean === 'all' ? undefined : top10 });
  const zi = Float64Array.from(items, (it) =>
    imagenetDogLogit(
      imagenetFromStore(
        store,
        it.hash,
        vs.map((k) => allViews[k]!),
      ),
    ),
  );
  const p = probsOf(crossFitStack([r.logits[0]!, zi], data.y, folds));
  const a = metricsOf(data.y, p);
  const s = metricsOf(data.y, p, small);
  log(
    `${label(set).padEnd(22)} stacked OOF ${a.logloss.toFixed(4)}, ${(100 * a.accuracy).toFixed(2)}%; 200 px ${s.logloss.toFixed(4)}, ${(100 * s.accuracy).toFixed(2)}% (${r.seconds.toFixed(0)} s)`,
  );
  return p;
}

const base = run(sets[0]!);
for (const set of sets.slice(1)) {
  const p = run(set);
  log(`  vs ${label(sets[0]!)}, paired: all ${formatPaired(pairedCompare(data.y, base, p))}`);
  log(`  vs ${label(sets[0]!)}, paired: 200 px ${formatPaired(pairedCompare(data.y, base, p, small))}`);
}
store.close();
await ds.close();
