/**
 * Activation ranges for int8 quantization, measured by running the fp32 graph on real photos:
 * a first pass finds each tensor's min-max range, a second puts every value into a 4096-bin
 * histogram over it, and a method turns the histogram into the range (see `rangesFrom`).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { DEFAULT_MODELS_DIR } from '../../paths.ts';
import { decodeImage } from '../../vision/decode.ts';
import { resizeRGB, toTensorNCHW } from '../../vision/preprocess.ts';
import type { BackboneDefinition } from '../backbones/types.ts';
import { rng } from '../weights/generate.ts';
import { applyRoundingDeltas, collectHessians, gptqKernel, nearestKernels, quantizedConvs, roundingDeltas } from './gptq.ts';
import { decodeModel, planQuantization, residualTensors, withOutputs, type QuantPlan, type Range } from './quantize.ts';

export type CalibrationMethod = 'minmax' | 'percentile' | 'mse';
export const CALIBRATION_METHODS: readonly CalibrationMethod[] = ['minmax', 'percentile', 'mse'];

export interface CalibrationResult {
  method: CalibrationMethod;
  /** Photos the ranges were measured on. */
  photos: number;
  ranges: Record<string, Range>;
}

const BINS = 4096;
export const DEFAULT_TAIL = 1e-5;

export interface CalibrateOptions {
  method?: CalibrationMethod;
  /** Tail mass cut off at each end by `percentile`. */
  tail?: number;
  /** `percentile`'s tail for the tensors on the residual path (see residualTensors); default `tail`. */
  residualTail?: number;
  threads?: number;
  /** Quantize the graph input too (the peak probes: their one convolution must read int8). */
  quantizeInput?: boolean;
  onProgress?: (done: number, total: number, pass: number) => void;
}

/** Per tensor: the min-max range over all photos, and a histogram of all values over it. */
export interface Histograms {
  names: string[];
  lo: Float64Array;
  hi: Float64Array;
  hist: Float64Array[];
  photos: number;
}

/**
 * Runs the fp32 graph on `count` inputs (one per call of `input`, so they need not all be in
 * memory) and collects the min-max range (pass 1) and, unless only min-max is wanted, a histogram
 * (pass 2) of every tensor `planQuantization` marks for calibration.
 */
export async function collectHistograms(
  fp32: Uint8Array,
  count: number,
  input: (i: number) => Promise<Float32Array>,
  inputShape: number[],
  o: { histograms?: boolean; threads?: number; quantizeInput?: boolean; onProgress?: CalibrateOptions['onProgress'] } = {},
): Promise<{ plan: QuantPlan; h: Histograms }> {
  const model = decodeModel(fp32);
  const plan = planQuantization(model, new Set(), o.quantizeInput ?? false);
  const names = plan.calibrated;
  const session = await ort.InferenceSession.create(withOutputs(model, names), {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'basic', // keeps every named tensor
    intraOpNumThreads: o.threads ?? 2,
    interOpNumThreads: 1,
    enableCpuMemArena: false,
  });
  const lo = new Float64Array(names.length).fill(Infinity);
  const hi = new Float64Array(names.length).fill(-Infinity);
  const hist = names.map(() => new Float64Array(BINS));
  const run = async (i: number) => {
    const x = new ort.Tensor('float32', await input(i), inputShape);
    return session.run({ [session.inputNames[0]]: x }, names);
  };
  try {
    for (let i = 0; i < count; i++) {
      const out = await run(i);
      names.forEach((n, k) => {
        const d = out[n].data as Float32Array;
        let a = lo[k];
        let b = hi[k];
        for (let j = 0; j < d.length; j++) {
          const v = d[j];
          if (v < a) a = v;
          if (v > b) b = v;
        }
        lo[k] = a;
        hi[k] = b;
      });
      o.onProgress?.(i + 1, count, 1);
    }
    if (o.histograms !== false) {
      for (let i = 0; i < count; i++) {
        const out = await run(i);
        names.forEach((n, k) => {
          const d = out[n].data as Float32Array;
          const h = hist[k];
          const a = lo[k];
          const inv = 1 / ((hi[k] - a) / BINS || 1);
          for (let j = 0; j < d.length; j++) {
            let b = ((d[j] - a) * inv) | 0;
            if (b >= BINS) b = BINS - 1;
            h[b]++;
          }
        });
        o.onProgress?.(i + 1, count, 2);
      }
    }
  } finally {
    await session.release();
  }
  return { plan, h: { names, lo, hi, hist, photos: count } };
}

/**
 * The quantization error (sum of squares, in histogram units) of uint8 levels over [a, b]:
 * values outside are clipped, values inside round to the nearest of 256 levels.
 */
function histogramMse(h: Float64Array, lo: number, w: number, a: number, b: number): number {
  const step = (b - a) / 255;
  let e = 0;
  for (let i = 0; i < h.length; i++) {
    if (!h[i]) continue;
    const x = lo + (i + 0.5) * w;
    if (x < a) e += h[i] * (a - x) ** 2;
    else if (x > b) e += h[i] * (x - b) ** 2;
    else e += (h[i] * step * step) / 12;
  }
  return e;
}

/**
 * Ranges from histograms:
 * - `minmax`: the smallest and largest value seen;
 * - `percentile`: the [tail, 1 - tail] quantiles;
 * - `mse`: the clipping range (searched over 128 shrink factors of the min-max range, keeping
 *   zero inside) with the least squared quantization error over all values.
 */
export function rangesFrom(h: Histograms, method: CalibrationMethod, tail: number | ((name: string) => number) = DEFAULT_TAIL): Record<string, Range> {
  const ranges: Record<string, Range> = {};
  h.names.forEach((n, k) => {
    const cut = typeof tail === 'number' ? tail : tail(n);
    const lo = h.lo[k];
    const hi = h.hi[k];
    const hist = h.hist[k];
    const w = (hi - lo) / BINS;
    if (method === 'minmax' || !(hi > lo)) {
      ranges[n] = { min: lo, max: hi };
      return;
    }
    if (method === 'percentile') {
      const total = hist.reduce((s, v) => s + v, 0);
      let acc = 0;
      let b0 = 0;
      while (b0 < BINS - 1 && acc + hist[b0] <= cut * total) acc += hist[b0++];
      acc = 0;
      let b1 = BINS - 1;
      while (b1 > 0 && acc + hist[b1] <= cut * total) acc += hist[b1--];
      ranges[n] = { min: b0 === 0 ? lo : lo + b0 * w, max: b1 === BINS - 1 ? hi : lo + (b1 + 1) * w };
      return;
    }
    const a0 = Math.min(0, lo);
    const b0 = Math.max(0, hi);
    let best = { e: Infinity, min: a0, max: b0 };
    for (let i = 128; i >= 1; i--) {
      const f = i / 128;
      const a = a0 * f;
      const b = b0 * f;
      const e = histogramMse(hist, lo, w, a, b);
      if (e < best.e) best = { e, min: a, max: b };
    }
    ranges[n] = { min: Math.max(best.min, lo), max: Math.min(best.max, hi) };
  });
  return ranges;
}

/** Measures the ranges of the tensors `planQuantization` marks for calibration, on `count` inputs. */
export async function calibrate(
  fp32: Uint8Array,
  count: number,
  input: (i: number) => Promise<Float32Array>,
  inputShape: number[],
  o: CalibrateOptions = {},
): Promise<{ plan: QuantPlan; result: CalibrationResult }> {
  const method = o.method ?? 'percentile';
  const { plan, h } = await collectHistograms(fp32, count, input, inputShape, { histograms: method !== 'minmax', threads: o.threads, quantizeInput: o.quantizeInput, onProgress: o.onProgress });
  const tail = o.tail ?? DEFAULT_TAIL;
  const residual = o.residualTail === undefined ? null : residualTensors(decodeModel(fp32), plan);
  const tails = residual ? (n: string) => (residual.has(n) ? o.residualTail! : tail) : tail;
  return { plan, result: { method, photos: count, ranges: rangesFrom(h, method, tails) } };
}

/** A calibration as stored: models/calibration/<backbone>-<weights key>.json (committed for the shipped weights). */
export interface CalibrationFile extends CalibrationResult {
  format: 'catdog-calibration/1';
  backbone: string;
  /** Identity of the fp32 weights the ranges belong to. */
  weightsId: string;
  tail?: number;
  /** `percentile`'s tail on the residual path, where it differs from `tail` (the ranges hold it already). */
  residualTail?: number;
  /** Mixed precision and the residual path (absent: everything quantizable in int8, QLinearAdd). */
  recipe?: QuantRecipe;
  /** Kernels rounded by GPTQ on the calibration photos (absent: round-to-nearest). */
  rounding?: RoundingInfo;
  /** The photos (dataset keys) the ranges were measured on: a conformance check must use others. */
  photoKeys: string[];
  date: string;
}

export function calibrationPath(backbone: string, cacheKey: string, modelsDir = DEFAULT_MODELS_DIR): string {
  return join(modelsDir, 'calibration', `${backbone}-${cacheKey}.json`);
}

export async function readCalibration(path: string): Promise<CalibrationFile | null> {
  if (!existsSync(path)) return null;
  return JSON.parse(await readFile(path, 'utf8')) as CalibrationFile;
}

/**
 * How a backbone's graph is quantized beyond the ranges, chosen per weights by measurement
 * (scripts/int8-sensitivity.ts), so it lives in the calibration file.
 */
export interface QuantRecipe {
  /** Tensors kept fp32 (the convolutions reading only fp32 tensors then stay fp32). */
  keepFloat?: string[];
  /** fp32 Adds on the residual path (see QuantPlan.floatResidual). */
  floatResidual?: boolean;
}

/**
 * GPTQ rounding of the int8 kernels (gptq.ts), stored beside the calibration file as the
 * brotli-compressed integers by which it differs from round-to-nearest.
 */
export interface RoundingInfo {
  method: 'gptq';
  /** File name, in the calibration file's folder. */
  file: string;
  /** sha256 of that file: part of the calibration's identity. */
  sha256: string;
  /** Input patches per photo and layer, at most. */
  positions: number;
  /** Fraction of the Hessian's mean diagonal added to it. */
  damp: number;
}

export const DEFAULT_GPTQ = { positions: 64, damp: 0.01 };

export function roundingPath(calibrationFile: string, r: RoundingInfo): string {
  return join(dirname(calibrationFile), r.file);
}

/**
 * The GPTQ kernels a calibration file names (undefined when it rounds to nearest), checked
 * against the sha256 it records, for the graph and plan they were made on.
 */
export async function roundedKernels(calibrationFile: string, c: Pick<CalibrationFile, 'rounding'>, model: Parameters<typeof planQuantization>[0], plan: QuantPlan): Promise<Map<string, Int8Array> | undefined> {
  if (!c.rounding) return undefined;
  const path = roundingPath(calibrationFile, c.rounding);
  if (!existsSync(path)) throw new Error(`${calibrationFile} names GPTQ rounding in ${path}, which is missing`);
  const bytes = await readFile(path);
  const sha = createHash('sha256').update(bytes).digest('hex');
  if (sha !== c.rounding.sha256) throw new Error(`${path} is not the rounding ${calibrationFile} names (sha256 ${sha.slice(0, 12)}, expected ${c.rounding.sha256.slice(0, 12)})`);
  const convs = quantizedConvs(model, plan);
  const rtn = new Map([...nearestKernels(model, convs)].map(([name, k]) => [name, k.q]));
  return applyRoundingDeltas(convs, rtn, bytes);
}

/** The quantization plan a calibration file asks for. */
export function planFor(model: Parameters<typeof planQuantization>[0], c: Pick<CalibrationFile, 'recipe'>): QuantPlan {
  return planQuantization(model, new Set(c.recipe?.keepFloat ?? []), { floatResidual: c.recipe?.floatResidual ?? false });
}

/** Content identity of a calibration: part of the int8 graph's weights identity. */
export function calibrationId(c: CalibrationFile): string {
  // The recipe joins the hash only when present, so a file without one keeps its identity.
  return createHash('sha256')
    .update(JSON.stringify({ method: c.method, tail: c.tail, weightsId: c.weightsId, ranges: c.ranges, ...(c.residualTail !== undefined ? { residualTail: c.residualTail } : {}), ...(c.recipe ? { recipe: c.recipe } : {}), ...(c.rounding ? { rounding: c.rounding.sha256 } : {}) }))
    .digest('hex');
}

/** The calibration photos of a dataset: the first `n` labelled photos after a seeded shuffle. */
export function calibrationSamples<T extends { key: string; label: unknown }>(samples: T[], n: number, seed = 2018): T[] {
  const labelled = samples.filter((s) => s.label !== null);
  // Seeded Fisher-Yates, the same permutation as train/fit.ts's shuffledIndices.
  const r = rng(seed);
  const idx = labelled.map((_, i) => i);
  for (let i = idx.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx.slice(0, Math.min(n, labelled.length)).map((i) => labelled[i]);
}

/**
 * Calibrates a backbone's fp32 graph on photos (bytes read on demand) and writes the calibration
 * file. Photos that do not decode are skipped.
 */
export async function calibrateBackbone(
  definition: BackboneDefinition,
  fp32Path: string,
  weightsId: string,
  cacheKey: string,
  photos: { key: string; read(): Promise<Uint8Array> }[],
  o: CalibrateOptions & { modelsDir?: string; recipe?: QuantRecipe; gptq?: { positions?: number; damp?: number; log?: (line: string) => void } } = {},
): Promise<{ path: string; file: CalibrationFile }> {
  const s = definition.inputSize;
  const tensors: Float32Array[] = [];
  const keys: string[] = [];
  for (const p of photos) {
    try {
      const rgb = await resizeRGB(await decodeImage(await p.read()), s);
      const t = new Float32Array(3 * s * s);
      toTensorNCHW(rgb, s, definition.preprocess, t, 0);
      tensors.push(t);
      keys.push(p.key);
    } catch {
      /* an unreadable photo is not calibration material */
    }
  }
  const fp32 = await readFile(fp32Path);
  const { result } = await calibrate(fp32, tensors.length, async (i) => tensors[i], [1, 3, s, s], o);
  const path = calibrationPath(definition.name, cacheKey, o.modelsDir);
  await mkdir(dirname(path), { recursive: true });
  let rounding: RoundingInfo | undefined;
  if (o.gptq) {
    const positions = o.gptq.positions ?? DEFAULT_GPTQ.positions;
    const damp = o.gptq.damp ?? DEFAULT_GPTQ.damp;
    const model = decodeModel(fp32);
    const plan = planFor(model, { recipe: o.recipe });
    const convs = quantizedConvs(model, plan);
    const t0 = performance.now();
    const hs = await collectHessians(model, convs, tensors.length, async (i) => tensors[i], [1, 3, s, s], { positions, threads: o.threads, onProgress: (d, n) => o.onProgress?.(d, n, 3) });
    o.gptq.log?.(`${definition.title}: input Hessians of ${convs.length} convolutions in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    const nearest = nearestKernels(model, convs);
    const rtn = new Map([...nearest].map(([name, k]) => [name, k.q]));
    const gq = new Map<string, Int8Array>();
    for (const c of convs) {
      const t1 = performance.now();
      const h = hs.get(c.kernel)!;
      gq.set(c.kernel, gptqKernel(nearest.get(c.kernel)!.kernel, c.dims[0], h.h, { bits: 8, damp }).q);
      hs.delete(c.kernel); // its memory goes as soon as it is used
      o.gptq.log?.(`${definition.title}: GPTQ ${c.kernel} (${c.dims.join('x')}, ${h.rows} patches) in ${((performance.now() - t1) / 1000).toFixed(1)} s`);
    }
    const bytes = roundingDeltas(convs, gq, rtn);
    const name = `${definition.name}-${cacheKey}.gptq.br`;
    const tmp = join(dirname(path), `${name}.${process.pid}.tmp`);
    await writeFile(tmp, bytes);
    await rename(tmp, join(dirname(path), name));
    rounding = { method: 'gptq', file: name, sha256: createHash('sha256').update(bytes).digest('hex'), positions, damp };
  }
  const file: CalibrationFile = {
    format: 'catdog-calibration/1',
    backbone: definition.name,
    weightsId,
    ...result,
    ...(result.method === 'percentile' ? { tail: o.tail ?? DEFAULT_TAIL, ...(o.residualTail !== undefined ? { residualTail: o.residualTail } : {}) } : {}),
    ...(o.recipe && (o.recipe.keepFloat?.length || o.recipe.floatResidual) ? { recipe: o.recipe } : {}),
    ...(rounding ? { rounding } : {}),
    photoKeys: keys,
    date: new Date().toISOString(),
  };
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(file)}\n`);
  await rename(tmp, path);
  return { path, file };
}
