import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { HEAD_FORMAT, Head, type HeadFile } from '../../src/model/head.ts';
import { PEAK_PROBES, probeInput, probeModel, probeModelInt8, type ProbeSpec } from '../../src/model/onnx/peak.ts';
import { activationParams, decodeModel, planQuantization, quantizeKernel } from '../../src/model/onnx/quantize.ts';

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
    expect(() => h.checkPrecision('fp32')).not.toThrow();
    expect(() => h.checkPrecision('int8')).toThrow(/trained on fp32 backbone features, but the backbones run in int8.*CATDOG_PRECISION=fp32/);
  });

  it('an int8 head refuses fp32 features; an unknown precision is not a head', () => {
    expect(() => new Head(file('int8')).checkPrecision('fp32')).toThrow(/trained on int8/);
    expect(() => new Head({ ...file(), precision: 'fp16' as 'fp32' })).toThrow(/precision is "fp16"/);
  });
});
