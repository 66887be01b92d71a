/**
 * Calibration-aware rounding of int8 kernels (GPTQ: Frantar et al., 2022, "GPTQ: Accurate
 * Post-Training Quantization for Generative Pre-trained Transformers", Algorithm 1).
 *
 * Round-to-nearest makes each weight's error as small as it can be alone; GPTQ rounds the input
 * columns of a layer one at a time and moves the rounding error of each onto the columns not yet
 * rounded, weighted by the inverse Hessian H = X^T X of the layer's inputs X (patches of real
 * photos' activations), so that the layer's *output* error on those inputs is what is made small.
 * The per-output-channel scales stay max|w|/127, exactly as quantizeKernel's, so a GPTQ kernel
 * differs from the round-to-nearest one only in some integers: that difference (mostly -1, 0, +1)
 * is what a calibration file stores (see roundingDeltas), brotli-compressed.
 *
 * The heavy products (X^T X over thousands of patches) run in ONNX Runtime (one MatMul graph);
 * the Cholesky factorisations and the column loop run here, in float64.
 */
import { brotliCompressSync, brotliDecompressSync, constants as zlibConstants } from 'node:zlib';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { rng } from '../weights/generate.ts';
import { floatValues, quantizeKernel, withOutputs, type QuantPlan } from './quantize.ts';

const { onnx } = onnxProto;
type ModelProto = InstanceType<typeof onnx.ModelProto>;
type NodeProto = onnxProto.onnx.INodeProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;

/** A convolution whose kernel int8 quantizes: the one that reads a quantized tensor. */
export interface QuantizedConv {
  node: string;
  input: string;
  kernel: string;
  /** OIHW. */
  dims: [number, number, number, number];
  strides: [number, number];
  /** top, left, bottom, right. */
  pads: [number, number, number, number];
}

function intsAttr(n: NodeProto, name: string): number[] | null {
  const a = (n.attribute ?? []).find((x) => x.name === name);
  return a ? (a.ints ?? []).map(Number) : null;
}

/** The convolutions of a plan whose kernels become int8, in graph order. */
export function quantizedConvs(model: ModelProto, plan: QuantPlan): QuantizedConv[] {
  const g = model.graph!;
  const inits = new Map((g.initializer ?? []).map((t) => [t.name!, t]));
  const q = new Set(plan.quantized);
  const out: QuantizedConv[] = [];
  for (const n of g.node ?? []) {
    if (n.opType !== 'Conv' || !q.has(n.input![0])) continue;
    const k = inits.get(n.input![1])!;
    const dims = k.dims!.map(Number) as QuantizedConv['dims'];
    const group = (n.attribute ?? []).find((a) => a.name === 'group');
    if (group && Number(group.i) !== 1) throw new Error(`GPTQ: grouped convolution ${n.name}`);
    const dil = intsAttr(n, 'dilations');
    if (dil?.some((d) => d !== 1)) throw new Error(`GPTQ: dilated convolution ${n.name}`);
    const s = intsAttr(n, 'strides') ?? [1, 1];
    const p = intsAttr(n, 'pads') ?? [0, 0, 0, 0];
    if ((n.attribute ?? []).some((a) => a.name === 'auto_pad' && a.s && Buffer.from(a.s).toString() !== 'NOTSET')) throw new Error(`GPTQ: auto_pad on ${n.name}`);
    out.push({ node: n.name!, input: n.input![0], kernel: n.input![1], dims, strides: [s[0], s[1]], pads: [p[0], p[1], p[2], p[3]] });
  }
  return out;
}

/** Each convolution's fp32 kernel and its round-to-nearest int8 integers (quantizeKernel, 8 bits), by kernel name. */
export function nearestKernels(model: ModelProto, convs: QuantizedConv[]): Map<string, { kernel: Float32Array; q: Int8Array }> {
  const inits = new Map((model.graph!.initializer ?? []).map((t) => [t.name!, t]));
  return new Map(
    convs.map((c) => {
      const kernel = floatValues(inits.get(c.kernel)!);
      return [c.kernel, { kernel, q: quantizeKernel(kernel, c.dims[0], 8).q }];
    }),
  );
}

/** ONNX Runtime graph: X [rows, K] → X^T X [K, K]. */
function gramModel(): Uint8Array {
  const vi = (name: string, dims: string[]) =>
    onnx.ValueInfoProto.create({
      name,
      type: onnx.TypeProto.create({
        tensorType: onnx.TypeProto.Tensor.create({ elemType: FLOAT, shape: onnx.TensorShapeProto.create({ dim: dims.map((d) => onnx.TensorShapeProto.Dimension.create({ dimParam: d })) }) }),
      }),
    });
  const perm = onnx.AttributeProto.create({ name: 'perm', type: onnx.AttributeProto.AttributeType.INTS, ints: [1, 0] });
  return onnx.ModelProto.encode(
    onnx.ModelProto.create({
      irVersion: 7,
      opsetImport: [onnx.OperatorSetIdProto.create({ domain: '', version: 13 })],
      producerName: 'catdog-gptq',
      graph: onnx.GraphProto.create({
        name: 'gram',
        node: [
          onnx.NodeProto.create({ opType: 'Transpose', input: ['x'], output: ['xt'], name: 't', attribute: [perm] }),
          onnx.NodeProto.create({ opType: 'MatMul', input: ['xt', 'x'], output: ['h'], name: 'mm' }),
        ],
        input: [vi('x', ['rows', 'k'])],
        output: [vi('h', ['k', 'k'])],
      }),
    }),
  ).finish();
}

export interface HessianOptions {
  /** Patches per photo and layer at most (layers with fewer output positions give all of them). */
  positions?: number;
  threads?: number;
  seed?: number;
  onProgress?: (done: number, total: number) => void;
}

/** Per quantized convolution (by kernel name): H = sum of x x^T over sampled input patches, and the patch count. */
export type Hessians = Map<string, { h: Float64Array; rows: number }>;

/**
 * Runs the fp32 graph on `count` inputs and accumulates, for every quantized convolution, X^T X
 * over input patches (C x kh x kw, zero-padded as the convolution pads) at up to `positions`
 * seeded-random output positions per photo.
 */
export async function collectHessians(
  model: ModelProto,
  convs: QuantizedConv[],
  count: number,
  input: (i: number) => Promise<Float32Array>,
  inputShape: number[],
  o: HessianOptions = {},
): Promise<Hessians> {
  const positions = o.positions ?? 64;
  const r = rng(o.seed ?? 2022);
  const names = [...new Set(convs.map((c) => c.input))];
  const session = await ort.InferenceSession.create(withOutputs(model, names), {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'basic',
    intraOpNumThreads: o.threads ?? 2,
    interOpNumThreads: 1,
    enableCpuMemArena: false,
  });
  const gram = await ort.InferenceSession.create(gramModel(), { executionProviders: ['cpu'], intraOpNumThreads: o.threads ?? 2, interOpNumThreads: 1 });
  const FLUSH = 2048;
  const state = convs.map((c) => {
    const K = c.dims[1] * c.dims[2] * c.dims[3];
    return { c, K, h: new Float64Array(K * K), rows: 0, buf: new Float32Array(FLUSH * K), fill: 0 };
  });
  const flush = async (s: (typeof state)[number]) => {
    if (!s.fill) return;
    const x = new ort.Tensor('float32', s.buf.subarray(0, s.fill * s.K), [s.fill, s.K]);
    const out = await gram.run({ x });
    const d = out.h.data as Float32Array;
    for (let i = 0; i < d.length; i++) s.h[i] += d[i];
    s.rows += s.fill;
    s.fill = 0;
  };
  try {
    for (let i = 0; i < count; i++) {
      const x = new ort.Tensor('float32', await input(i), inputShape);
      const out = await session.run({ [session.inputNames[0]]: x }, names);
      for (const s of state) {
        const t = out[s.c.input];
        const [, C, H, W] = t.dims.map(Number);
        const a = t.data as Float32Array;
        const [, , kh, kw] = s.c.dims;
        const [sh, sw] = s.c.strides;
        const [pt, pl, pb, pr] = s.c.pads;
        const Ho = Math.floor((H + pt + pb - kh) / sh) + 1;
        const Wo = Math.floor((W + pl + pr - kw) / sw) + 1;
        const all = Ho * Wo;
        const take = Math.min(all, positions);
        // Seeded sample of output positions without replacement (all of them when few).
        const pos = Array.from({ length: all }, (_, k) => k);
        for (let k = 0; k < take; k++) {
          const j = k + Math.floor(r() * (all - k));
          [pos[k], pos[j]] = [pos[j], pos[k]];
        }
        for (let k = 0; k < take; k++) {
          if (s.fill === FLUSH) await flush(s);
          const oy = Math.floor(pos[k] / Wo);
          const ox = pos[k] % Wo;
          const row = s.buf.subarray(s.fill * s.K, (s.fill + 1) * s.K);
          let j = 0;
          for (let c = 0; c < C; c++) {
            for (let u = 0; u < kh; u++) {
              const y = oy * sh - pt + u;
              for (let v = 0; v < kw; v++) {
                const xx = ox * sw - pl + v;
                row[j++] = y >= 0 && y < H && xx >= 0 && xx < W ? a[(c * H + y) * W + xx] : 0;
              }
            }
          }
          s.fill++;
        }
      }
      o.onProgress?.(i + 1, count);
    }
    for (const s of state) await flush(s);
  } finally {
    await session.release();
    await gram.release();
  }
  return new Map(state.map((s) => [s.c.kernel, { h: s.h, rows: s.rows }]));
}

/**
 * U, upper triangular, with U^T U = H^-1 (the factor GPTQ's column loop reads), without forming
 * H^-1: with J the reversal, J H J = L L^T (Cholesky) gives H = A A^T for the upper triangular
 * A = J L J, so H^-1 = A^-T A^-1 and U = A^-1 = J L^-1 J. Overwrites nothing; returns U.
 */
export function inverseCholeskyUpper(h: Float64Array, K: number): Float64Array {
  // L: Cholesky of the reversed matrix, row-major lower triangle.
  const L = new Float64Array(K * K);
  for (let i = 0; i < K; i++) {
    const ri = i * K;
    for (let j = 0; j <= i; j++) {
      const rj = j * K;
      let s = h[(K - 1 - i) * K + (K - 1 - j)];
      for (let k = 0; k < j; k++) s -= L[ri + k] * L[rj + k];
      if (i === j) {
        if (!(s > 0)) throw new Error(`GPTQ: the Hessian is not positive definite at ${i} (${s})`);
        L[ri + i] = Math.sqrt(s);
      } else L[ri + j] = s / L[rj + j];
    }
  }
  // Y = (L^-1)^T, row j of Y = column j of L^-1, by forward substitution (contiguous rows of L).
  const Y = new Float64Array(K * K);
  const x = new Float64Array(K);
  for (let j = 0; j < K; j++) {
    x.fill(0, 0, j);
    for (let i = j; i < K; i++) {
      const ri = i * K;
      let s = i === j ? 1 : 0;
      for (let k = j; k < i; k++) s -= L[ri + k] * x[k];
      x[i] = s / L[ri + i];
    }
    Y.set(x.subarray(j), j * K + j);
  }
  // U[a][b] = L^-1[K-1-a][K-1-b] = Y[K-1-b][K-1-a], nonzero for b >= a.
  const U = new Float64Array(K * K);
  for (let a = 0; a < K; a++) for (let b = a; b < K; b++) U[a * K + b] = Y[(K - 1 - b) * K + (K - 1 - a)];
  return U;
}

/**
 * GPTQ on one OIHW kernel (rows: output channels, columns: the K = C*kh*kw inputs), with
 * quantizeKernel's per-channel scales and range. `damp`: the fraction of H's mean diagonal
 * added to the diagonal (the paper's 1%).
 */
export function gptqKernel(kernel: Float32Array, outChannels: number, h: Float64Array, o: { bits?: 7 | 8; damp?: number } = {}): { q: Int8Array; scales: Float32Array } {
  const bits = o.bits ?? 8;
  const qmax = bits === 8 ? 127 : 63;
  const K = kernel.length / outChannels;
  if (h.length !== K * K) throw new Error(`GPTQ: Hessian of ${Math.sqrt(h.length)} inputs for a kernel of ${K}`);
  const { scales } = quantizeKernel(kernel, outChannels, bits);
  const H = Float64Array.from(h);
  const W = Float64Array.from(kernel);
  let mean = 0;
  for (let j = 0; j < K; j++) mean += H[j * K + j];
  mean /= K;
  for (let j = 0; j < K; j++) {
    if (H[j * K + j] === 0) {
      // An input that is always zero: its weights cannot matter; round them plainly.
      H[j * K + j] = 1;
    }
    H[j * K + j] += (o.damp ?? 0.01) * (mean || 1);
  }
  const U = inverseCholeskyUpper(H, K);
  const q = new Int8Array(kernel.length);
  for (let j = 0; j < K; j++) {
    const uj = j * K;
    const d = U[uj + j];
    for (let r = 0; r < outChannels; r++) {
      const wr = r * K;
      const s = scales[r];
      const w = W[wr + j];
      const v = Math.max(-qmax, Math.min(qmax, Math.round(w / s)));
      q[wr + j] = v;
      const e = (w - v * s) / d;
      if (e === 0) continue;
      for (let k = j + 1; k < K; k++) W[wr + k] -= e * U[uj + k];
    }
  }
  return { q, scales };
}

/** The integers by which GPTQ's kernels differ from round-to-nearest's, concatenated in `convs` order. */
export function roundingDeltas(convs: QuantizedConv[], kernels: Map<string, Int8Array>, rtn: Map<string, Int8Array>): Uint8Array {
  const total = convs.reduce((s, c) => s + c.dims.reduce((a, b) => a * b, 1), 0);
  const out = new Int8Array(total);
  let at = 0;
  for (const c of convs) {
    const q = kernels.get(c.kernel)!;
    const base = rtn.get(c.kernel)!;
    for (let i = 0; i < q.length; i++) {
      const d = q[i] - base[i];
      if (d < -127 || d > 127) throw new Error(`GPTQ: delta ${d} out of range in ${c.kernel}`);
      out[at++] = d;
    }
  }
  return brotliCompressSync(new Uint8Array(out.buffer), { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 9, [zlibConstants.BROTLI_PARAM_SIZE_HINT]: total } });
}

/** Kernel name → int8 kernel: round-to-nearest plus the stored deltas (the inverse of roundingDeltas). */
export function applyRoundingDeltas(convs: QuantizedConv[], rtn: Map<string, Int8Array>, compressed: Uint8Array): Map<string, Int8Array> {
  const raw = brotliDecompressSync(compressed);
  const d = new Int8Array(raw.buffer, raw.byteOffset, raw.byteLength);
  const total = convs.reduce((s, c) => s + c.dims.reduce((a, b) => a * b, 1), 0);
  if (d.length !== total) throw new Error(`rounding deltas hold ${d.length} weights, the graph's int8 kernels ${total}`);
  const out = new Map<string, Int8Array>();
  let at = 0;
  for (const c of convs) {
    const base = rtn.get(c.kernel)!;
    const q = new Int8Array(base.length);
    for (let i = 0; i < q.length; i++) q[i] = base[i] + d[at++];
    out.set(c.kernel, q);
  }
  return out;
}
