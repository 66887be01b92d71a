/**
 * Answer latency for one photo (decode + every view's backbone run + head + "neither"), by the
 * views a head averages and the precision the backbones run in: the same head weights asked with
 * each set of views, on an fp32 and an int8 classifier, interleaved round-robin so that load from
 * other work on the machine hits every variant alike.
 *
 *   npx tsx scripts/latency.ts [--photos 8] [--rounds 15] [--precisions fp32,int8] [VIEWS...]
 *
 * VIEWS default: 224,224f 224,224f,288 224,224f,288,288f; a set may name the pooling its head reads
 * after an @ (224,224f@avg; default: the active head's, pooling.ts). Photos come from train.zip (full
 * resolution, as users post them). Prints the median and p90 of each variant and its ratio to the
 * first (the first views in the first precision).
 */
import { parseArgs } from 'node:util';
import { Classifier } from '../src/model/classifier.ts';
import { Head, loadHead } from '../src/model/head.ts';
import { Registry } from '../src/model/registry.ts';
import type { Precision } from '../src/model/types.ts';
import { loadConfig } from '../src/config.ts';
import { fusedWidth } from '../src/model/backbones/index.ts';
import { parsePooling } from '../src/model/pooling.ts';
import { openDataset } from '../src/train/dataset.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { photos: { type: 'string', default: '8' }, rounds: { type: 'string', default: '15' }, precisions: { type: 'string', default: 'fp32,int8' } },
});
const views = positionals.length ? positionals : ['224,224f', '224,224f,288', '224,224f,288,288f'];
const precisions = values.precisions!.split(',').map((p) => p.trim()) as Precision[];
const config = loadConfig();
const base = await loadHead(new Registry(config.model.registryDir).activeHeadPath()!);
// Latency does not depend on the head's values: one copy per variant, marked with the precision it is asked in.
const headFor = (spec: string, precision: Precision) => {
  const [v, p] = spec.split('@');
  const pooling = parsePooling(p ?? base.pooling);
  const d = fusedWidth(base.backbones, pooling);
  // The active head's weights cut or repeated to the pooling's width: latency does not depend on them.
  const toWidth = (a: number[] | undefined) => a && Array.from({ length: d }, (_, i) => a[i % a.length]!);
  return new Head({ ...base.file, views: v!.split(','), precision, pooling, featureSize: d, kernel: toWidth(base.file.kernel)!, mean: toWidth(base.file.mean), scale: toWidth(base.file.scale) });
};
const variants = precisions.flatMap((precision) => views.map((v) => ({ name: `${precision} views ${v}${v.includes('@') ? '' : `@${base.pooling}`}`, precision, head: headFor(v, precision) })));
const classifiers = new Map<Precision, Classifier>();
for (const p of precisions) classifiers.set(p, await Classifier.load({ model: config.model, precision: p, head: variants.find((x) => x.precision === p)!.head }));
const ds = await openDataset('../shared/data/dogs-vs-cats/train.zip', { kind: 'train' });
const photos = await Promise.all(ds.samples.filter((_, i) => i % 250 === 7).slice(0, Number(values.photos)).map((s) => s.read()));
const times = variants.map(() => [] as number[]);
for (const v of variants) {
  const c = classifiers.get(v.precision)!;
  c.setHead(v.head);
  await c.classify(photos[0]!); // warm-up (first run of a new input size plans the graph)
}
for (let r = 0; r < Number(values.rounds); r++) {
  for (const photo of photos) {
    for (const [k, v] of variants.entries()) {
      const c = classifiers.get(v.precision)!;
      c.setHead(v.head);
      const t = performance.now();
      await c.classify(photo);
      times[k]!.push(performance.now() - t);
    }
  }
}
const q = (a: number[], f: number) => [...a].sort((x, y) => x - y)[Math.floor(f * (a.length - 1))]!;
const m0 = q(times[0]!, 0.5);
variants.forEach((v, k) => {
  const med = q(times[k]!, 0.5);
  process.stdout.write(`${v.name}: median ${med.toFixed(1)} ms, p90 ${q(times[k]!, 0.9).toFixed(1)} ms per answer (${times[k]!.length} answers), ${(med / m0).toFixed(2)}x the first\n`);
});
await ds.close();
for (const c of classifiers.values()) await c.close();
