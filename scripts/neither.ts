/**
 * Calibrates the "neither" rule (src/model/neither.ts) on:
 * - the training photos (all labelled cats and dogs: a "neither" on them is false), from the
 *   feature cache's ImageNet probabilities (run `catdog features --views ...` first);
 * - photos that show no cat or dog, and photos that do, run through ResNet50 here (Debian's
 *   `darknet` samples by default: horses, eagle, giraffe, kite, scream show neither; dog and
 *   person show a dog).
 *
 *   npx tsx scripts/neither.ts ../shared/data/dogs-vs-cats/train.zip ../shared/data/dogs-vs-cats/train-200px.zip \
 *     [--views 224,288: the head's views; mirrored ones are ignored] [--max-false 0.002] [--neither-photos a.jpg,b.jpg] [--animal-photos c.jpg]
 *
 * Prints the top-10 rule's rates, then calibrates the 'mass+novelty' rule (src/model/neither.ts):
 * a mass gate 25% above the neither photos' largest cat+dog mass, and a cosine threshold to the
 * training photos' class centroids between the neither photos' largest similarity and the
 * largest threshold that keeps false "neither" on the training photos within --max-false.
 * Writes the rule (with its centroids) to --out for `catdog train --neither FILE.json`.
 * --sample N: the training photos of `catdog train --sample N`. --apply: store the active model
 * again with this rule (same head weights and views) as a new version, and make it active.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Classifier } from '../src/model/classifier.ts';
import { catDogMass, centroidSimilarity, isNeither, type NeitherRule } from '../src/model/neither.ts';
import { shuffledTrainFirst } from '../src/train/cv.ts';
import { Registry } from '../src/model/registry.ts';
import { neitherFeatureView, parseViews, viewCode, viewName } from '../src/model/views.ts';
import { loadConfig } from '../src/config.ts';
import { openDataset } from '../src/train/dataset.ts';
import { defaultCacheDir, hashSamples, openFeatureStoreFor } from '../src/train/features.ts';

const DARKNET = '/usr/share/darknet/data';
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    views: { type: 'string', default: '224,288' },
    'max-false': { type: 'string', default: '0.002' },
    'neither-photos': { type: 'string', default: ['horses', 'eagle', 'giraffe', 'kite', 'scream'].map((n) => `${DARKNET}/${n}.jpg`).join(',') },
    'animal-photos': { type: 'string', default: ['dog', 'person'].map((n) => `${DARKNET}/${n}.jpg`).join(',') },
    sample: { type: 'string' },
    out: { type: 'string' },
    apply: { type: 'boolean', default: false },
  },
});
const log = (s: string) => process.stdout.write(`${s}\n`);
const config = loadConfig();
// As a classifier answers (classifier.ts `features`): the mass is the mean over the head's unmirrored
// views, the similarity is of the features at neitherFeatureView's view.
const headViews = parseViews(values.views!);
const views = headViews.filter((v) => !v.flip);
const featureView = neitherFeatureView(headViews);
const maxFalse = Number(values['max-false']);
const outFile = resolve(values.out ?? join(config.dataDir, 'reports', 'neither', 'rule.json'));

const classifier = await Classifier.load({ model: config.model, head: null });
const store = openFeatureStoreFor(classifier.info().backboneInfo, defaultCacheDir(config.dataDir), { readOnly: true });
const ds = await openDataset(positionals, { kind: 'train' });
const hashed = await hashSamples(ds.samples.filter((s) => s.label !== null));
const train: { key: string; probs: Float32Array[] }[] = [];
const trainItems: { hash: string; label: number }[] = [];
let pool = hashed.ok;
if (values.sample) pool = shuffledTrainFirst(pool.map((x) => ({ ...x, label: x.sample.label }))).slice(0, Number(values.sample));
for (const it of pool) {
  const probs = views.map((v) => store.imagenet!.get(it.hash, viewCode(v)));
  if (probs.every((p) => p) && store.caches.get('resnet50')!.has(it.hash, viewCode(featureView))) {
    train.push({ key: it.sample.key, probs: probs as Float32Array[] });
    trainItems.push({ hash: it.hash, label: it.sample.label! });
  }
}
log(`${train.length} training photos with ImageNet probabilities at ${views.map(viewName).join(', ')} (${hashed.ok.length - train.length} without)`);

async function outside(list: string): Promise<{ name: string; probs: Float32Array[]; features: Float32Array }[]> {
  const out = [];
  for (const path of list.split(',').filter(Boolean)) {
    const img = await classifier.decode(await readFile(path));
    const r = await classifier.backboneFeatures([img], { views: headViews });
    out.push({
      name: basename(path),
      probs: r.imagenetViews[0]!.filter((p, k): p is Float32Array => p !== null && !headViews[k]!.flip),
      features: r.perBackbone.resnet50![0]![headViews.indexOf(featureView)]!,
    });
  }
  return out;
}
const neitherPhotos = await outside(values['neither-photos']!);
const animalPhotos = await outside(values['animal-photos']!);
const top10False = train.filter((t) => isNeither({ rule: 'top10' }, [t.probs[0]!])).length;
log(`top-10 rule (${viewName(views[0]!)} only): false "neither" on training photos ${top10False}/${train.length} = ${((100 * top10False) / train.length).toFixed(2)}%; neither photos answered "neither": ${neitherPhotos.filter((p) => isNeither({ rule: 'top10' }, [p.probs[0]!])).map((p) => p.name).join(', ') || 'none'}`);

// mass+novelty: the mass gate lets every neither photo through (25% above the largest of
// theirs); among training photos under it, the cosine threshold keeps at most --max-false of all
// training photos below it, halfway between the neither photos' largest similarity and that bound.
const resnet = store.caches.get('resnet50')!;
const feats = trainItems.map((it) => resnet.get(it.hash, viewCode(featureView))!);
const centroids = [0, 1].map((label) => {
  const c = new Float64Array(2048);
  let k = 0;
  trainItems.forEach((it, i) => {
    if (it.label !== label) return;
    k++;
    for (let j = 0; j < 2048; j++) c[j]! += feats[i]![j]!;
  });
  return Array.from(c, (v) => Number((v / k).toPrecision(6)));
});
const meanMass = (probs: Float32Array[]) => probs.reduce((s, p) => s + catDogMass(p), 0) / probs.length;
const massGate = Number((1.25 * Math.max(...neitherPhotos.map((p) => meanMass(p.probs)))).toPrecision(2));
const cosOf = (f: Float32Array) => centroidSimilarity(f, centroids);
const under = train.map((t, i) => ({ t, cos: cosOf(feats[i]!) })).filter((r) => meanMass(r.t.probs) < massGate).sort((a, b) => a.cos - b.cos);
const allowed = Math.floor(maxFalse * train.length);
const upper = under[allowed]?.cos ?? 1;
const lower = Math.max(...neitherPhotos.map((p) => cosOf(p.features)));
log(`mass gate ${massGate}: ${under.length} training photos under it; neither photos' largest similarity ${lower.toFixed(3)}; the ${allowed + 1}th lowest training similarity under the gate ${upper.toFixed(3)}`);
for (const p of [...neitherPhotos, ...animalPhotos]) log(`  ${p.name}: mass ${meanMass(p.probs).toExponential(2)}, similarity ${cosOf(p.features).toFixed(3)}`);
const separable = lower < upper;
const cosine = Number((separable ? (lower + upper) / 2 : lower + 1e-3).toFixed(3));
if (!separable) log(`no threshold meets both aims: keeping every neither photo "neither" (similarity < ${cosine}) costs more false "neither" than --max-false`);
const rule: NeitherRule = { rule: 'mass+novelty', threshold: massGate, cosine, centroids };
const falseKeys = train.filter((t, i) => isNeither(rule, t.probs, feats[i])).map((t) => t.key);
log(`mass+novelty rule (mass < ${massGate} and similarity < ${cosine}):`);
log(`  false "neither" on the ${train.length} training photos: ${falseKeys.length} = ${((100 * falseKeys.length) / train.length).toFixed(3)}% (${falseKeys.join(', ')})`);
for (const p of neitherPhotos) log(`  ${p.name} (no cat or dog): ${isNeither(rule, p.probs, p.features) ? 'neither' : 'NOT neither'}`);
for (const p of animalPhotos) log(`  ${p.name} (shows a dog): ${isNeither(rule, p.probs, p.features) ? 'NEITHER (wrong)' : 'cat/dog'}`);
await mkdir(dirname(outFile), { recursive: true });
await writeFile(outFile, JSON.stringify(rule));
log(`wrote ${outFile}`);
const summary = {
  rule: 'mass+novelty',
  threshold: massGate,
  cosine,
  views: views.map(viewName),
  calibratedOn: { trainingPhotos: train.length, ...(values.sample ? { sample: Number(values.sample) } : {}), neitherPhotos: neitherPhotos.map((p) => p.name), animalPhotos: animalPhotos.map((p) => p.name) },
  falseNeither: { count: falseKeys.length, rate: falseKeys.length / train.length, keys: falseKeys },
  top10FalseNeither: { count: top10False, rate: top10False / train.length },
  neitherPhotosAnsweredNeither: neitherPhotos.map((p) => [p.name, isNeither(rule, p.probs, p.features)]),
  animalPhotosAnsweredNeither: animalPhotos.map((p) => [p.name, isNeither(rule, p.probs, p.features)]),
};
log(JSON.stringify(summary));
if (values.apply) {
  // A new version of the active model: the same head weights and views, with this rule.
  const registry = new Registry(config.model.registryDir);
  const state = registry.readActiveState();
  if (!state.active) throw new Error('no active model to apply the rule to');
  const head = await registry.loadModel(state.active);
  const id = await registry.addModel({ ...head.file, neither: rule, meta: { ...head.file.meta, derivedFrom: state.active, neitherCalibration: summary } });
  await registry.useModel(id);
  log(`model ${id}: ${state.active} with the mass+novelty "neither" rule, now active`);
}
store.close();
await ds.close();
await classifier.close();
