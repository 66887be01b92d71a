import { describe, expect, it } from 'vitest';
import { initTf, tf } from '../../src/model/tf.ts';
import { rng } from '../../src/model/weights/generate.ts';

/** Plain-JS product of batches of matrices, with NumPy-style broadcasting over the batch. */
function reference(a: number[], aShape: number[], b: number[], bShape: number[], ta: boolean, tb: boolean) {
  const [ba, ra, ca] = aShape as [number, number, number];
  const [bb, rb, cb] = bShape as [number, number, number];
  const m = ta ? ca : ra;
  const k = ta ? ra : ca;
  const n = tb ? rb : cb;
  const batch = Math.max(ba, bb);
  const out = new Float64Array(batch * m * n);
  for (let p = 0; p < batch; p++) {
    const pa = ba === 1 ? 0 : p;
    const pb = bb === 1 ? 0 : p;
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let q = 0; q < k; q++) {
          const av = ta ? a[pa * ra * ca + q * ca + i]! : a[pa * ra * ca + i * ca + q]!;
          const bv = tb ? b[pb * rb * cb + j * cb + q]! : b[pb * rb * cb + q * cb + j]!;
          s += av * bv;
        }
        out[p * m * n + i * n + j] = s;
      }
  }
  return out;
}

function random(n: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => r() - 0.5);
}

describe('TF.js matMul on the backend initTf picks', () => {
  it('runs the transposing BatchMatMul kernel on wasm', async () => {
    const backend = await initTf();
    if (backend === 'wasm') expect((tf.getKernel('BatchMatMul', 'wasm') as { patched?: boolean }).patched).toBe(true);
  });

  const cases: [string, number[], number[], boolean, boolean][] = [
    ['a transposed', [1, 7, 5], [1, 7, 6], true, false],
    ['b transposed', [1, 5, 7], [1, 6, 7], false, true],
    ['both transposed', [1, 7, 5], [1, 6, 7], true, true],
    ['neither', [1, 5, 7], [1, 7, 6], false, false],
    ['batches, a transposed', [3, 7, 5], [3, 7, 6], true, false],
    ['a broadcast over b, b transposed', [1, 5, 7], [4, 6, 7], false, true],
  ];
  for (const [name, aShape, bShape, ta, tb] of cases) {
    it(`gives the plain product: ${name}`, async () => {
      await initTf();
      const av = random(
        aShape.reduce((x, y) => x * y),
        7,
      );
      const bv = random(
        bShape.reduce((x, y) => x * y),
        11,
      );
      const got = tf.tidy(() => tf.matMul(tf.tensor3d(av, aShape as [number, number, number]), tf.tensor3d(bv, bShape as [number, number, number]), ta, tb));
      const want = reference(av, aShape, bv, bShape, ta, tb);
      const values = await got.data();
      got.dispose();
      expect(values.length).toBe(want.length);
      for (let i = 0; i < want.length; i++) expect(values[i]).toBeCloseTo(want[i]!, 5);
    });
  }

  it('trains through it: the gradient of sum(x·w) by w is xᵀ·1, and nothing leaks', async () => {
    await initTf();
    const x = random(6 * 4, 3);
    const before = tf.memory().numTensors;
    const g = tf.tidy(() => {
      const xt = tf.tensor2d(x, [6, 4]);
      const w = tf.ones([4, 3]);
      return tf.grad((wv: tf.Tensor) => tf.sum(tf.matMul(xt, wv)))(w);
    });
    const values = await g.data();
    g.dispose();
    expect(tf.memory().numTensors).toBe(before);
    for (let i = 0; i < 4; i++) {
      let col = 0;
      for (let r = 0; r < 6; r++) col += x[r * 4 + i]!;
      for (let j = 0; j < 3; j++) expect(values[i * 3 + j]).toBeCloseTo(col, 5);
    }
  });
});
