import { describe, expect, it } from 'vitest';
import { applyRoundingDeltas, collectHessians, gptqKernel, inverseCholeskyUpper, quantizedConvs, roundingDeltas } from '../../src/model/onnx/gptq.ts';
import { probeInput, probeModel, type ProbeSpec } from '../../src/model/onnx/peak.ts';
import { decodeModel, planQuantization, quantizeKernel, quantizeModel } from '../../src/model/onnx/quantize.ts';
import { rng } from '../../src/model/weights/generate.ts';

/** rows x K inputs whose columns are correlated (as neighbouring pixels and channels are). */
function correlatedInputs(rows: number, K: number, seed: number): Float64Array {
  const r = rng(seed);
  const x = new Float64Array(rows * K);
  for (let i = 0; i < rows; i++) {
    let prev = 0;
    for (let j = 0; j < K; j++) {
      prev = 0.8 * prev + (r() - 0.5);
      x[i * K + j] = prev + 0.3 * (r() - 0.5);
    }
  }
  return x;
}

function gram(x: Float64Array, rows: number, K: number): Float64Array {
  const h = new Float64Array(K * K);
  for (let i = 0; i < rows; i++) for (let a = 0; a < K; a++) for (let b = 0; b < K; b++) h[a * K + b] += x[i * K + a] * x[i * K + b];
  return h;
}

/** Sum over rows and outputs of (x . (w - q*s))^2: the layer's output error on these inputs. */
function outputError(x: Float64Array, rows: number, K: number, w: Float32Array, q: Int8Array, scales: Float32Array): number {
  const O = w.length / K;
  let e = 0;
  for (let i = 0; i < rows; i++) {
    for (let o = 0; o < O; o++) {
      let s = 0;
      for (let j = 0; j < K; j++) s += x[i * K + j] * (w[o * K + j] - q[o * K + j] * scales[o]);
      e += s * s;
    }
  }
  return e;
}

describe('GPTQ rounding', () => {
  it('factors the inverse Hessian: U upper triangular with U^T U H = I', () => {
    const K = 9;
    const rows = 40;
    const h = gram(correlatedInputs(rows, K, 3), rows, K);
    for (let j = 0; j < K; j++) h[j * K + j] += 0.01;
    const U = inverseCholeskyUpper(h, K);
    for (let a = 0; a < K; a++) for (let b = 0; b < a; b++) expect(U[a * K + b]).toBe(0);
    for (let a = 0; a < K; a++) {
      for (let b = 0; b < K; b++) {
        let v = 0;
        for (let c = 0; c < K; c++) {
          let utu = 0;
          for (let k = 0; k < K; k++) utu += U[k * K + a] * U[k * K + c];
          v += utu * h[c * K + b];
        }
        expect(v).toBeCloseTo(a === b ? 1 : 0, 8);
      }
    }
  });

  it('keeps round-to-nearest scales and range and makes the output error on the calibration inputs smaller', () => {
    const O = 6;
    const K = 32;
    const rows = 300;
    const r = rng(5);
    const w = Float32Array.from({ length: O * K }, () => (r() - 0.5) * 0.2);
    const x = correlatedInputs(rows, K, 9);
    const h = gram(x, rows, K);
    const rtn = quantizeKernel(w, O, 8);
    const g = gptqKernel(w, O, h, { damp: 0.01 });
    expect(Array.from(g.scales)).toEqual(Array.from(rtn.scales));
    expect(Math.max(...Array.from(g.q, Math.abs))).toBeLessThanOrEqual(127);
    expect(Array.from(g.q)).not.toEqual(Array.from(rtn.q));
    const eRtn = outputError(x, rows, K, w, rtn.q, rtn.scales);
    const eGptq = outputError(x, rows, K, w, g.q, g.scales);
    expect(eGptq).toBeLessThan(0.7 * eRtn);
    // ... and on inputs it did not see, drawn the same way.
    const y = correlatedInputs(rows, K, 10);
    expect(outputError(y, rows, K, w, g.q, g.scales)).toBeLessThan(outputError(y, rows, K, w, rtn.q, rtn.scales));
  });

  it('accumulates X^T X over zero-padded patches exactly as the convolution reads them', async () => {
    const spec: ProbeSpec = { name: 'tiny', channels: 2, filters: 3, size: 5, kernel: 3 };
    const model = decodeModel(probeModel(spec));
    const plan = planQuantization(model, new Set(), true);
    const convs = quantizedConvs(model, plan);
    expect(convs.map((c) => [c.dims, c.pads, c.strides])).toEqual([[[3, 2, 3, 3], [1, 1, 1, 1], [1, 1]]]);
    const input = probeInput(spec);
    const hs = await collectHessians(model, convs, 1, async () => input, [1, 2, 5, 5], { positions: 1000, threads: 1 });
    const { h, rows } = hs.get(convs[0].kernel)!;
    expect(rows).toBe(25);
    // Brute force: every output position's 2x3x3 patch.
    const K = 18;
    const patches = new Float64Array(25 * K);
    for (let oy = 0; oy < 5; oy++) {
      for (let ox = 0; ox < 5; ox++) {
        let j = 0;
        for (let c = 0; c < 2; c++) {
          for (let u = 0; u < 3; u++) {
            for (let v = 0; v < 3; v++) {
              const y = oy - 1 + u;
              const xx = ox - 1 + v;
              patches[(oy * 5 + ox) * K + j++] = y >= 0 && y < 5 && xx >= 0 && xx < 5 ? input[(c * 5 + y) * 5 + xx] : 0;
            }
          }
        }
      }
    }
    const want = gram(patches, 25, K);
    for (let i = 0; i < K * K; i++) expect(h[i]).toBeCloseTo(want[i], 4);
  });

  it('the int8 graph carries the given kernels, with round-to-nearest scales', () => {
    const spec: ProbeSpec = { name: 'tiny', channels: 2, filters: 3, size: 5, kernel: 3 };
    const model = decodeModel(probeModel(spec));
    const plan = planQuantization(model, new Set(), true);
    const ranges = new Map(plan.calibrated.map((t) => [t, { min: -1, max: 1 }]));
    const [conv] = quantizedConvs(model, plan);
    const mine = Int8Array.from({ length: 54 }, (_, i) => (i % 7) - 3);
    const int8Of = (bytes: Uint8Array) => {
      const t = decodeModel(bytes).graph!.initializer!.find((x) => x.name === `${conv.kernel}/int8`)!;
      return Array.from(new Int8Array(new Uint8Array(t.rawData!).buffer));
    };
    expect(int8Of(quantizeModel(model, plan, ranges, { kernels: new Map([[conv.kernel, mine]]) }))).toEqual(Array.from(mine));
    expect(int8Of(quantizeModel(model, plan, ranges))).not.toEqual(Array.from(mine));
    expect(() => quantizeModel(model, plan, ranges, { kernels: new Map([[conv.kernel, mine.subarray(1)]]) })).toThrow(/53 weights, the graph's 54/);
  });

  it('stores a kernel as its difference from round-to-nearest and gets it back', () => {
    const convs = [
      { node: 'a', input: 'x', kernel: 'ka', dims: [2, 3, 1, 1] as [number, number, number, number], strides: [1, 1] as [number, number], pads: [0, 0, 0, 0] as [number, number, number, number] },
      { node: 'b', input: 'y', kernel: 'kb', dims: [1, 2, 2, 1] as [number, number, number, number], strides: [1, 1] as [number, number], pads: [0, 0, 0, 0] as [number, number, number, number] },
    ];
    const rtn = new Map([
      ['ka', Int8Array.of(1, -2, 127, 0, 5, -127)],
      ['kb', Int8Array.of(3, 4, -5, 6)],
    ]);
    const gptq = new Map([
      ['ka', Int8Array.of(2, -2, 126, 0, 4, -127)],
      ['kb', Int8Array.of(3, 5, -5, 6)],
    ]);
    const back = applyRoundingDeltas(convs, rtn, roundingDeltas(convs, gptq, rtn));
    expect([...back].map(([k, v]) => [k, Array.from(v)])).toEqual([...gptq].map(([k, v]) => [k, Array.from(v)]));
    expect(() => applyRoundingDeltas(convs.slice(0, 1), rtn, roundingDeltas(convs, gptq, rtn))).toThrow(/hold 10 weights/);
  });
});
