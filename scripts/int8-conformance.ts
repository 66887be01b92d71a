/**
 * `npx tsx scripts/int8-conformance.ts [--photos 1000] [--offset 0] [--backbones resnet50] SOURCE...`
 *
 * int8 vs fp32 on real photos the calibration did not see (the calibration file lists its
 * photos): per photo, the cosine between the pooled features of the two graphs, and for ResNet50
 * whether ImageNet top-1 is the same class. Prints the minimum and quantiles of the cosine and the
 * top-1 agreement, with the photo count. `--offset N` starts after the first N held-out photos (a
 * second set, away from the first one).
 */
import { argmax, cosine } from '../src/model/vectors.ts';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { BACKBONES } from '../src/model/backbones/index.ts';
import type { BackboneName } from '../src/model/types.ts';
import { loadConfig } from '../src/config.ts';

const isBackboneName = (s: string): s is BackboneName => Object.hasOwn(BACKBONES, s);
const model = loadConfig().model;
import { looksLikeNeither, topK } from '../src/model/imagenet.ts';
import { calibrationPath, readCalibration } from '../src/model/onnx/calibrate.ts';
import { loadBackbone, runBackbone } from '../src/model/onnx/session.ts';
import { resolveWeights } from '../src/model/weights/sources.ts';
import { openDataset } from '../src/train/dataset.ts';
import { decodeImage } from '../src/vision/decode.ts';
import { resizeRGB, toTensorNCHW } from '../src/vision/preprocess.ts';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { photos: { type: 'string', default: '1000' }, offset: { type: 'string', default: '0' }, backbones: { type: 'string', default: 'resnet50' } } });
const ds = await openDataset(positionals);
void ort;
for (const name of values.backbones.split(',')) {
  if (!isBackboneName(name)) throw new Error(`unknown backbone ${name}`);
  const def = BACKBONES[name];
  const spec = model.weights[name] ?? (name === 'resnet50' ? def.defaultWeights : 'generated');
  const cal = await readCalibration(calibrationPath(name, resolveWeights(def, spec, model.modelsDir).cacheKey, model.modelsDir));
  const seen = new Set(cal?.photoKeys ?? []);
  const photos = ds.samples.filter((s) => !seen.has(s.key)).slice(Number(values.offset), Number(values.offset) + Number(values.photos));
  if (!photos.length) throw new Error(`no held-out photos after the first ${values.offset}`);
  const fp32 = await loadBackbone(def, spec, { precision: 'fp32', modelsDir: model.modelsDir });
  const int8 = await loadBackbone(def, spec, { precision: 'int8', modelsDir: model.modelsDir });
  const cos: number[] = [];
  let agree = 0;
  let tops = 0;
  let clear = 0;
  let clearAgree = 0;
  let neitherAgree = 0;
  const s = def.inputSize;
  for (const p of photos) {
    let x: Float32Array;
    try {
      const rgb = await resizeRGB(await decodeImage(await p.read()), s);
      x = new Float32Array(3 * s * s);
      toTensorNCHW(rgb, s, def.preprocess, x, 0);
    } catch {
      continue;
    }
    const a = await runBackbone(fp32, x, 1);
    const b = await runBackbone(int8, x, 1);
    cos.push(cosine(a.features, b.features));
    if (a.imagenet && b.imagenet) {
      tops++;
      const same = argmax(a.imagenet) === argmax(b.imagenet);
      if (same) agree++;
      // Clear cases: fp32's best class ahead of its second by at least 0.1 in probability.
      const [t1, t2] = topK(a.imagenet, 2);
      if (t1.p - t2.p >= 0.1) {
        clear++;
        if (same) clearAgree++;
      }
      if (looksLikeNeither(topK(a.imagenet, 10)) === looksLikeNeither(topK(b.imagenet, 10))) neitherAgree++;
    }
    if (cos.length % 200 === 0) console.error(`${def.title}: ${cos.length} photos`);
  }
  cos.sort((p, q) => p - q);
  const q = (f: number) => cos[Math.min(cos.length - 1, Math.floor(f * cos.length))].toFixed(5);
  console.log(
    `${def.title} (${fp32.info.weights}) on ${cos.length} held-out photos${values.offset !== '0' ? ` (after the first ${values.offset})` : ''} of ${positionals.map((x) => x.split('/').pop()).join(' + ')}: cosine int8 vs fp32 min ${cos[0].toFixed(5)}, 1% ${q(0.01)}, median ${q(0.5)}; ` +
      `below 0.99: ${cos.filter((c) => c < 0.99).length}` +
      (tops
        ? `; ImageNet top-1 the same on ${agree}/${tops} (${((agree / tops) * 100).toFixed(2)}%), on ${clearAgree}/${clear} (${((clearAgree / clear) * 100).toFixed(2)}%) where fp32's top-1 leads its second by >= 0.1; ` +
          `the "neither" verdict (top-10) the same on ${neitherAgree}/${tops}`
        : ''),
  );
  await fp32.session.release();
  await int8.session.release();
}
await ds.close();
