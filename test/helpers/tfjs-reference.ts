/**
 * The reference our ONNX graphs are checked against: Keras topologies run by TF.js
 * (`@tensorflow/tfjs`), on its wasm backend (the cpu backend when wasm cannot start).
 */
import { initTf, tf } from '../../src/model/tf.ts';
import { rng } from '../../src/model/weights/generate.ts';

export { initTf };

export interface LayersModelArtifacts {
  modelTopology: object;
  weightSpecs: tf.io.WeightsManifestEntry[];
  weightData: ArrayBuffer;
}

export async function loadLayersModel(a: LayersModelArtifacts): Promise<tf.LayersModel> {
  await initTf();
  return tf.loadLayersModel(tf.io.fromMemory(a));
}

/**
 * Globally average-pooled output of `layerName` for NHWC inputs (each [size, size, 3], already
 * preprocessed): the "no top, pooling='avg'" features Keras would give (`pooling='max'`: its
 * global maximum, Keras's pooling='max').
 */
export function pooledFeatures(model: tf.LayersModel, layerName: string, inputs: Float32Array[], size: number, pooling: 'avg' | 'max' = 'avg'): Float32Array[] {
  const sub = tf.model({ inputs: model.inputs, outputs: model.getLayer(layerName).output as tf.SymbolicTensor });
  return inputs.map((x) =>
    tf.tidy(() => {
      const t = tf.tensor4d(x, [1, size, size, 3]);
      const y = sub.predict(t) as tf.Tensor4D;
      return (pooling === 'max' ? y.max([1, 2]) : y.mean([1, 2])).dataSync() as Float32Array;
    }),
  );
}

export { tf };

/**
 * Gives every weight of a TF.js model seeded random values with sensible scales (He-scaled
 * kernels, batch-norm statistics away from the identity), so that a comparison exercises every
 * weight, batch-norm folding included.
 */
export function randomizeWeights(model: tf.LayersModel, seed: number): void {
  const r = rng(seed);
  const normal = (std: number) => (r() + r() + r() + r() - 2) * Math.sqrt(3) * std;
  for (const layer of model.layers) {
    const ws = layer.weights;
    if (!ws.length) continue;
    const values = ws.map((w) => {
      const shape = w.shape as number[];
      const n = shape.reduce((x, y) => x * y, 1);
      const role = w.originalName.split('/').pop()!;
      const v = new Float32Array(n);
      const fanIn = shape.length === 4 ? shape[0] * shape[1] * (role === 'depthwise_kernel' ? 1 : shape[2]) : shape[0];
      for (let i = 0; i < n; i++) {
        if (role === 'kernel' || role === 'depthwise_kernel' || role === 'pointwise_kernel') v[i] = normal(Math.sqrt(2 / fanIn));
        else if (role === 'gamma') v[i] = 0.5 + r();
        else if (role === 'moving_variance') v[i] = 0.5 + 1.5 * r();
        else v[i] = 0.4 * r() - 0.2; // beta, moving_mean, bias
      }
      return tf.tensor(v, shape);
    });
    layer.setWeights(values);
    values.forEach((t) => t.dispose());
  }
}

/** Reads a TF.js model's weights out as `layer/role` manifest entries and one buffer. */
export function exportWeights(model: tf.LayersModel): { specs: { name: string; shape: number[]; dtype: 'float32' }[]; data: Uint8Array } {
  const specs: { name: string; shape: number[]; dtype: 'float32' }[] = [];
  const chunks: Float32Array[] = [];
  for (const layer of model.layers) {
    for (const w of layer.weights) {
      specs.push({ name: `${layer.name}/${w.originalName.split('/').pop()}`, shape: w.shape as number[], dtype: 'float32' });
      chunks.push(w.read().dataSync() as Float32Array);
    }
  }
  const total = chunks.reduce((s, c) => s + c.length, 0);
  const all = new Float32Array(total);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  return { specs, data: new Uint8Array(all.buffer) };
}
