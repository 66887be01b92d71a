/**
 * Probe: cache ResNet50's int8 7x7..NxN feature map (conv5_block3_out, uint8 codes) for a sample of
 * photos at one view, to try pooling heads other than the global average.
 * npx tsx scripts/maps-probe.ts --size 288 --photos 4000 --out /work/maps/p288 <zips...>
 */
import { openSync, writeSync, closeSync, writeFileSync, readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { decodeModel, floatValues, withOutputs } from '../src/model/onnx/quantize.ts';
import { ensureInt8, sessionOptions } from '../src/model/onnx/session.ts';
import { BACKBONES } from '../src/model/backbones/index.ts';
import { resolveWeights } from '../src/model/weights/sources.ts';
import { openDataset, contentHash } from '../src/train/dataset.ts';
import { shuffledTrainFirst } from '../src/train/cv.ts';
import { decodeImage } from '../src/vision/decode.ts';
import { resizeRGB, toTensorNCHW, flipHorizontalRGB } from '../src/vision/preprocess.ts';

const args = process.argv.slice(2);
const opt = (k: string, d: string) => {
  const i = args.indexOf(k);
  if (i < 0) return d;
  const v = args[i + 1]!;
  args.splice(i, 2);
  return v;
};
const size = Number(opt('--size', '288'));
const flip = opt('--flip', '0') === '1';
const photos = Number(opt('--photos', '4000'));
const out = opt('--out', `/work/maps/p${size}`);
const skip = Number(opt('--skip', '0'));
const def = BACKBONES.resnet50;
const g = await ensureInt8(def, resolveWeights(def), console.log);
const model = decodeModel(readFileSync(g.path));
const name = 'conv5_block3_out/q';
const scaleV = floatValues(model.graph!.initializer!.find((t) => t.name === 'conv5_block3_out/q_scale')!)[0]!;
const bytes = withOutputs(model, [name], onnxProto.onnx.TensorProto.DataType.UINT8);
const session = await ort.InferenceSession.create(bytes, sessionOptions({}, def));
const ds = await openDataset(args);
const samples = shuffledTrainFirst(ds.samples.filter((s) => s.label !== null)).slice(skip, skip + photos);
const fd = openSync(`${out}.bin`, 'w');
const meta: { key: string; hash: string; label: number }[] = [];
let side = 0;
const t0 = performance.now();
for (const s of samples) {
  const b = await s.read();
  const img = await decodeImage(b);
  let rgb = await resizeRGB(img, size);
  if (flip) rgb = flipHorizontalRGB(rgb, size);
  const x = new Float32Array(3 * size * size);
  toTensorNCHW(rgb, size, def.preprocess, x, 0);
  const r = await session.run({ input: new ort.Tensor('float32', x, [1, 3, size, size]) }, [name]);
  const m = r[name]!;
  side = m.dims[2] as number;
  const u8 = m.data as Uint8Array;
  writeSync(fd, u8);
  meta.push({ key: s.key, hash: contentHash(b), label: s.label! });
  if (meta.length % 250 === 0) console.log(`${meta.length}/${samples.length} ${(meta.length / ((performance.now() - t0) / 1000)).toFixed(1)} img/s`);
}
closeSync(fd);
writeFileSync(`${out}.json`, JSON.stringify({ size, flip, side, channels: 2048, scale: scaleV, items: meta }));
await ds.close();
console.log('done', meta.length, side, scaleV);
