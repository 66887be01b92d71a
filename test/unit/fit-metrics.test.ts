import { describe, expect, it } from 'vitest';
import { rng } from '../../src/model/weights/generate.ts';
import { fitLogreg, fitSeedRecipe, lbfgs, shuffledIndices, split, type TrainingSet } from '../../src/train/fit.ts';
import { accuracy, confusion, logLoss, worstErrors } from '../../src/train/metrics.ts';

/** Two Gaussian clouds in d dimensions, separated along the first `informative` axes. */
function clouds(n: number, d: number, sep: number, seed: number, mean = 10, std = 3): TrainingSet {
  const r = rng(seed);
  const normal = () => (r() + r() + r() + r() - 2) * Math.sqrt(3);
  const x = new Float32Array(n * d);
  const y = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = i % 2;
    for (let j = 0; j < d; j++) x[i * d + j] = normal() * std + mean + (j < 8 ? (y[i] ? sep : -sep) * std : 0);
  }
  return { x, y, n, d };
}

describe('metrics', () => {
  it('log loss is Kaggle\'s, clipped at 1e-15', () => {
    expect(logLoss([1, 0], [0.9, 0.1])).toBeCloseTo(-Math.log(0.9), 12);
    expect(logLoss([1], [0])).toBeCloseTo(-Math.log(1e-15), 6);
    expect(logLoss([0, 1], [0.5, 0.5])).toBeCloseTo(Math.LN2, 12);
  });
  it('accuracy, confusion and worst errors agree', () => {
    const y = [0, 0, 1, 1];
    const p = [0.1, 0.7, 0.2, 0.99];
    expect(accuracy(y, p)).toBe(0.5);
    expect(confusion(y, p)).toEqual({ catAsCat: 1, catAsDog: 1, dogAsCat: 1, dogAsDog: 1 });
    expect(worstErrors(y, p, 2)).toEqual([2, 1]);
  });
});

describe('head fitting', () => {
  it('shuffles deterministically and holds out the last 20%', () => {
    expect(Array.from(shuffledIndices(10, 2018))).toEqual(Array.from(shuffledIndices(10, 2018)));
    expect(Array.from(shuffledIndices(10, 2018))).not.toEqual(Array.from(shuffledIndices(10, 7)));
    const data = clouds(100, 4, 1, 1);
    const s = split(data, { seed: 2018, validationSplit: 0.2 });
    expect(s.train.n).toBe(80);
    expect(s.val.n).toBe(20);
    expect(new Set([...s.trainIdx, ...s.valIdx]).size).toBe(100);
  });

  it('L-BFGS finds the minimum of a quadratic', () => {
    const target = Float64Array.from([3, -2, 0.5]);
    const x = lbfgs((p, g) => {
      let f = 0;
      for (let i = 0; i < 3; i++) {
        const d = p[i] - target[i];
        f += (i + 1) * d * d;
        g[i] = 2 * (i + 1) * d;
      }
      return f;
    }, new Float64Array(3));
    for (let i = 0; i < 3; i++) expect(x[i]).toBeCloseTo(target[i], 4);
  });

  it('logistic regression separates separable clouds and picks l2 on validation', () => {
    const data = clouds(600, 32, 0.8, 2);
    const h = fitLogreg(data, { l2: [1e-1, 1e-2] });
    expect(h.valAcc).toBeGreaterThan(0.97);
    expect(h.valLoss).toBeLessThan(0.1);
    expect(h.history).toHaveLength(2);
    expect(Math.min(...h.history.map((e) => e.valLoss))).toBe(h.valLoss);
  });

  it('the seed recipe (Dropout + Dense, Adadelta lr 1.0, TF.js) learns and logs every epoch', async () => {
    // Pooled-feature-like scale (ResNet50's pooled features are small and non-negative).
    const data = clouds(600, 32, 0.8, 3, 0.5, 0.3);
    const h = await fitSeedRecipe(data, { epochs: 8 });
    expect(h.history.map((e) => e.epoch)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(h.history[7].loss).toBeLessThan(h.history[0].loss);
    expect(h.valAcc).toBeGreaterThan(0.9);
    expect(h.params).toMatchObject({ optimizer: 'adadelta', learningRate: 1, batchSize: 128 });
    // Seeded throughout (weights, dropout, the order of every epoch): the same data, the same head.
    const again = await fitSeedRecipe(data, { epochs: 8 });
    expect(Array.from(again.kernel)).toEqual(Array.from(h.kernel));
    expect(again.valLoss).toBe(h.valLoss);
  });
});
