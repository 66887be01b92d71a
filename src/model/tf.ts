/**
 * TF.js for Node without tfjs-node: the wasm backend (SIMD, much faster than the pure-JS cpu
 * backend for head training), falling back to cpu when wasm cannot start.
 */
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

let ready: Promise<string> | null = null;

export function initTf(): Promise<string> {
  ready ??= (async () => {
    const require = createRequire(import.meta.url);
    setWasmPaths(join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm')), '/'));
    try {
      if (await tf.setBackend('wasm')) {
        await tf.ready();
        transposeBeforeMatMul();
        return tf.getBackend();
      }
    } catch {
      // fall through to cpu
    }
    await tf.setBackend('cpu');
    await tf.ready();
    return tf.getBackend();
  })();
  return ready;
}

type KernelArgs = Parameters<tf.KernelFunc>[0];
type Info = tf.TensorInfo & { shape: number[] };

/**
 * TF.js 4.22's wasm BatchMatMul is about 18x slower with transposeA or transposeB than on the
 * same operands transposed first (measured: a 392 x 2048 by 392 x 512 product with transposeA,
 * 1,960 ms; an explicit transpose and a plain product, 110 ms), and every matMul gradient uses
 * those flags: training a dense layer spent most of its time there. This re-registers the wasm
 * kernel to materialise the transpose with the wasm Transpose kernel and multiply untransposed;
 * the result is the same product (test/unit/tf.test.ts).
 */
function transposeBeforeMatMul(): void {
  const original = tf.getKernel('BatchMatMul', 'wasm');
  const transpose = tf.getKernel('Transpose', 'wasm');
  if (!original || !transpose || (original as { patched?: boolean }).patched) return;
  const lastTwoSwapped = (rank: number) => [...Array(rank - 2).keys(), rank - 1, rank - 2];
  const kernelFunc = (args: KernelArgs) => {
    const { inputs, backend, attrs } = args;
    const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
    if (!transposeA && !transposeB) return original.kernelFunc(args);
    const temps: Info[] = [];
    const materialise = (x: Info, flip: boolean): Info => {
      if (!flip) return x;
      const t = transpose.kernelFunc({ inputs: { x }, backend, attrs: { perm: lastTwoSwapped(x.shape.length) } }) as Info;
      temps.push(t);
      return t;
    };
    try {
      const a = materialise(inputs.a as Info, transposeA);
      const b = materialise(inputs.b as Info, transposeB);
      return original.kernelFunc({ inputs: { a, b }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } });
    } finally {
      for (const t of temps) (backend as { disposeData(id: object): void }).disposeData(t.dataId);
    }
  };
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel({ ...original, kernelFunc: kernelFunc as tf.KernelFunc, patched: true } as tf.KernelConfig);
}

export { tf };
