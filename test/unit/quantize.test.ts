import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { HEAD_FORMAT, Head, type HeadFile } from '../../src/model/head.ts';
import { PEAK_PROBES, probeInput, probeModel, probeModelInt8, type ProbeSpec } from '../../src/model/onnx/peak.ts';
import onnxProto from 'onnx-proto';
import { calibrate, calibrationId, planFor, rangesFrom, type CalibrationFile, type Histograms } from '../../src/model/onnx/calibrate.ts';
import { activationParams, decodeModel, planQuantization, quantizeKernel, quantizeModel, residualTensors } from '../../src/model/onnx/quantize.ts';

const { onnx } = onnxProto;

/**
 * A residual block in miniature: stem Conv → Relu (x) → Conv → Relu → Conv (b) → Add(b, x) →
 * Relu (out) → GlobalAveragePool. 4 channels, 6x6.
 */
function residualModel(): Uint8Array {
  const F = onnx.TensorProto.DataType.FLOAT;
  const w = (name: string, seed: number) =>
    onnx.TensorProto.create({ name, dims: [4, 4, 1, 1], dataType: F, rawData: new Uint8Array(Float32Array.from({ length: 16 }, (_, i) => Math.sin(i * 7 + seed) * 0.5).buffer) });
  const vi = (name: string, dims: number[]) =>
    onnx.ValueInfoProto.create({
      name,
      type: onnx.TypeProto.create({ tensorType: onnx.TypeProto.Tensor.create({ elemType: F, shape: onnx.TensorShapeProto.create({ dim: dims.map((d) => onnx.TensorShapeProto.Dimension.create({ dimValue: d })) }) }) }),
    });
  const node = (opType: string, input: string[], output: string) => onnx.NodeProto.create({ opType, input, output: [output], name: output });
  return onnx.ModelProto.encode(
    onnx.ModelProto.create({
      irVersion: 7,
      opsetImport: [onnx.OperatorSetIdProto.create({ domain: '', version: 13 })],
      graph: onnx.GraphProto.create({
        name: 'residual',
        node: [
          node('Conv', ['input', 'k0'], 'stem'),
          node('Relu', ['stem'], 'x'),
          node('Conv', ['x', 'k1'], 'c1'),
          node('Relu', ['c1'], 'r1'),
          node('Conv', ['r1', 'k2'], 'b'),
          node('Add', ['b', 'x'], 'sum'),
          node('Relu', ['sum'], 'out'),
          node('GlobalAveragePool', ['out'], 'y'),
        ],
        initializer: [w('k0', 0), w('k1', 1), w('k2', 2)],
        input: [vi('input', [1, 4, 6, 6])],
        output: [vi('y', [1, 4, 1, 1])],
      }),
    }),
  ).finish();
}
const residualInput = () => Float32Array.from({ length: 4 * 36 }, (_, i) => Math.cos(i * 0.37));

const small: ProbeSpec = { name: 'small', channels: 16, filters: 32, size: 20, kernel: 3 };

describe('int8 quantizer', () => {
  it('quantizes kernels per output channel, symmetric, within half a step', () => {
    const k = Float32Array.from([0.5, -1, 0.25, 0.1, 0.02, -0.04, 0, 0, 0]); // 3 channels of 3
    for (const bits of [8, 7] as const) {
      const qmax = bits === 8 ? 127 : 63;
      const { q, scales } = quantizeKernel(k, 3, bits);
      expect(Array.from(scales.slice(0, 2))).toEqual([Math.fround(1 / qmax), Math.fround(0.1 / qmax)]);
      expect(q[1]).toBe(-qmax); // the largest magnitude of a channel takes the full range
      expect(q[3]).toBe(qmax);
      expect(Array.from(q.slice(6))).toEqual([0, 0, 0]); // an all-zero channel stays zero
      for (let i = 0; i < 6; i++) expect(Math.abs(q[i] * scales[Math.floor(i / 3)] - k[i])).toBeLessThanOrEqual(scales[Math.floor(i / 3)] / 2 + 1e-6);
    }
  });

  it('represents zero exactly in activations; a non-negative range gets zero point 0', () => {
    expect(activationParams({ min: 0, max: 6.375 })).toEqual({ scale: 0.025, zeroPoint: 0 });
    const p = activationParams({ min: -1, max: 3 });
    expect(p.zeroPoint).toBe(64);
    expect(Math.abs(-p.zeroPoint * p.scale + 1)).toBeLessThan(p.scale); // -1 is within a step
  });

  it('folds a Relu that follows a Conv into the quantization of its output', () => {
    const plan = planQuantization(decodeModel(probeModel(small)), new Set(), true);
    expect(plan.quantized).toEqual(['input', 'relu']);
    expect([...plan.foldedRelu]).toEqual([['relu', 'conv']]);
    // By default the graph input stays fp32, and so does the convolution reading it (the stem).
    expect(planQuantization(decodeModel(probeModel(small))).quantized).toEqual(['relu']);
    expect([...plan.foldedRelu]).toEqual([['relu', 'conv']]);
  });

  it('gives a graph that ONNX Runtime runs as QLinearConv, close to fp32', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'catdog-q-'));
    const opt = join(dir, 'opt.onnx');
    const q = await probeModelInt8(small);
    const int8 = await ort.InferenceSession.create(q, { graphOptimizationLevel: 'all', intraOpNumThreads: 1, optimizedModelFilePath: opt });
    const ops = decodeModel(readFileSync(opt)).graph!.node!.map((n) => n.opType);
    expect(ops).toContain('QLinearConv');
    expect(ops).not.toContain('Conv');
    const fp32 = await ort.InferenceSession.create(probeModel(small), { intraOpNumThreads: 1 });
    const x = new ort.Tensor('float32', probeInput(small), [1, small.channels, small.size, small.size]);
    const a = (await fp32.run({ input: x })).y.data as Float32Array;
    const b = (await int8.run({ input: x })).y.data as Float32Array;
    const scale = Math.max(...a.map(Math.abs));
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThan(0.02 * scale);
    await fp32.release();
    await int8.release();
  });

  it('finds the residual path: the Add inputs and its folded Relu, not the tensors inside the block', () => {
    const m = decodeModel(residualModel());
    const plan = planQuantization(m);
    expect(plan.calibrated).toEqual(['x', 'r1', 'b', 'out']);
    expect([...residualTensors(m, plan)].sort()).toEqual(['b', 'out', 'x']);
  });

  it('keeps the tensors a recipe names in fp32, and the convolutions reading only them', async () => {
    const m = decodeModel(residualModel());
    const plan = planFor(m, { recipe: { keepFloat: ['x'] } });
    expect(plan.quantized).toEqual(['r1', 'b', 'out']); // c1 reads fp32 x: an fp32 Conv whose output is quantized
    const { result } = await calibrate(residualModel(), 1, async () => residualInput(), [1, 4, 6, 6], { method: 'minmax', threads: 1 });
    const q = decodeModel(quantizeModel(m, plan, new Map(Object.entries(result.ranges))));
    const dqInputs = q.graph!.node!.filter((n) => n.opType === 'DequantizeLinear').map((n) => n.input![0]);
    expect(dqInputs).not.toContain('x/q');
    expect(dqInputs).toContain('k2/int8'); // the Conv reading r1 is int8
    expect(dqInputs).not.toContain('k1/int8'); // the Conv reading x is not
    expect(planFor(m, {}).quantized).toEqual(planQuantization(m).quantized);
  });

  it('fp32 residual path: the Add reads the identity in fp32 and its Relu stays an op', async () => {
    const m = decodeModel(residualModel());
    const plan = planQuantization(m, new Set(), { floatResidual: true });
    expect(plan.quantized).toEqual(['x', 'r1', 'b', 'out']);
    // Neither the Relu after the Add nor the one whose output the Add reads is folded.
    expect([...plan.foldedRelu]).toEqual([['r1', 'c1']]);
    const { result } = await calibrate(residualModel(), 1, async () => residualInput(), [1, 4, 6, 6], { method: 'minmax', threads: 1 });
    const q = decodeModel(quantizeModel(m, plan, new Map(Object.entries(result.ranges))));
    const add = q.graph!.node!.find((n) => n.opType === 'Add')!;
    expect(add.input![1]).toBe('x'); // fp32 identity
    expect(add.input![0]).toMatch(/^b\/dq/); // the block's last Conv is still quantized (QLinearConv)
    expect(q.graph!.node!.filter((n) => n.opType === 'Relu').map((n) => n.output![0])).toEqual(['x', 'out']);
    // And it runs, close to fp32.
    const x = new ort.Tensor('float32', residualInput(), [1, 4, 6, 6]);
    const a = await ort.InferenceSession.create(residualModel());
    const b = await ort.InferenceSession.create(onnx.ModelProto.encode(q).finish());
    const ya = (await a.run({ input: x })).y.data as Float32Array;
    const yb = (await b.run({ input: x })).y.data as Float32Array;
    for (let i = 0; i < 4; i++) expect(Math.abs(ya[i] - yb[i])).toBeLessThan(0.02 * Math.max(...ya.map(Math.abs)));
    await a.release();
    await b.release();
  });

  it('percentile cuts a tail per tensor when asked', () => {
    // 1000 values: 999 in the first bin, 1 in the last; a 1e-2 tail cuts it, 1e-4 does not.
    const hist = new Float64Array(4096);
    hist[0] = 999;
    hist[4095] = 1;
    const h: Histograms = { names: ['a', 'b'], lo: Float64Array.of(0, 0), hi: Float64Array.of(4096, 4096), hist: [hist, hist.slice()], photos: 1 };
    const r = rangesFrom(h, 'percentile', (n) => (n === 'a' ? 1e-2 : 1e-4));
    expect(r.a.max).toBe(1);
    expect(r.b.max).toBe(4096);
    expect(rangesFrom(h, 'percentile', 1e-2)).toEqual({ a: r.a, b: r.a });
  });

  it('calibrates the residual path with its own tail, and only it', async () => {
    const run = (o: { tail: number; residualTail?: number }) =>
      calibrate(residualModel(), 1, async () => residualInput(), [1, 4, 6, 6], { method: 'percentile', threads: 1, ...o }).then((r) => r.result.ranges);
    const wide = await run({ tail: 0 });
    const cut = await run({ tail: 0.2 });
    const mixed = await run({ tail: 0.2, residualTail: 0 });
    expect(cut.r1.max).toBeLessThan(wide.r1.max); // the tail cuts something, on the residual path too
    for (const t of ['x', 'b', 'out']) expect(cut[t]).not.toEqual(wide[t]);
    expect(mixed.r1).toEqual(cut.r1); // inside the block: the main tail
    for (const t of ['x', 'b', 'out']) expect(mixed[t]).toEqual(wide[t]); // residual path: its own
  });

  it("a calibration's identity covers its recipe and residual tail; a file without them keeps its old identity", () => {
    const c: CalibrationFile = { format: 'catdog-calibration/1', backbone: 'resnet50', weightsId: 'w', method: 'percentile', tail: 1e-5, photos: 1, ranges: { a: { min: 0, max: 1 } }, photoKeys: [], date: '' };
    const old = createHash('sha256').update(JSON.stringify({ method: c.method, tail: c.tail, weightsId: c.weightsId, ranges: c.ranges })).digest('hex');
    expect(calibrationId(c)).toBe(old);
    expect(calibrationId({ ...c, recipe: { keepFloat: ['a'] } })).not.toBe(old);
    expect(calibrationId({ ...c, residualTail: 1e-6 })).not.toBe(old);
  });

  it('peak probes are big enough to time: at least 0.5 GMAC each', async () => {
    const { probeMacs } = await import('../../src/model/onnx/peak.ts');
    for (const p of PEAK_PROBES) expect(probeMacs(p)).toBeGreaterThan(5e8);
  });
});

describe('head precision', () => {
  const file = (precision?: 'fp32' | 'int8'): HeadFile => ({
    format: HEAD_FORMAT,
    backbones: ['resnet50'],
    featureSize: 2048,
    kernel: Array(2048).fill(0),
    bias: 0,
    ...(precision ? { precision } : {}),
  });

  it('a head without a precision is an fp32 head, and refuses int8 features', () => {
    const h = new Head(file());
    expect(h.precision).toBe('fp32');
    expect(() => h.checkPrecision({ resnet50: 'fp32' })).not.toThrow();
    expect(() => h.checkPrecision({ resnet50: 'int8' })).toThrow(/trained on fp32 backbone features, but the backbones run in int8.*CATDOG_PRECISION=fp32/);
  });

  it('an int8 head refuses fp32 features; an unknown precision is not a head', () => {
    expect(() => new Head(file('int8')).checkPrecision({ resnet50: 'fp32' })).toThrow(/trained on int8/);
    expect(() => new Head({ ...file(), precision: 'fp16' as 'fp32' })).toThrow(/precision is "fp16"/);
  });

  it('a head trained on int8 ResNet50 and fp32 InceptionV3 (no calibration) answers only for that mix, and says so', () => {
    const mixed: HeadFile = {
      format: HEAD_FORMAT,
      backbones: ['resnet50', 'inception_v3'],
      featureSize: 4096,
      kernel: Array(4096).fill(0),
      bias: 0,
      precision: { resnet50: 'int8', inception_v3: 'fp32' },
    };
    const h = new Head(mixed);
    expect(h.precision).toBe('resnet50 int8 + inception_v3 fp32');
    expect(() => h.checkPrecision({ resnet50: 'int8', inception_v3: 'fp32' })).not.toThrow();
    expect(() => h.checkPrecision({ resnet50: 'int8', inception_v3: 'int8' })).toThrow(/trained on resnet50 int8 \+ inception_v3 fp32 backbone features, but the backbones run in int8/);
    expect(() => new Head({ ...mixed, precision: { resnet50: 'int8', xception: 'fp32' } })).toThrow(/precision is/);
  });
});
