/**
 * The reference our ONNX graphs are checked against: Keras topologies run by TF.js
 * (`@tensorflow/tfjs`), on its wasm backend (the cpu backend when wasm cannot start).
 */
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

let ready: Promise<string> | null = null;

export function initTf(): Promise<string> {
  ready ??= (async () => {
    const require = createRequire(import.meta.url);
    const dist = join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm')), '/');
    setWasmPaths(dist);
    try {
      if (await tf.setBackend('wasm')) {
        await tf.ready();
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
 * preprocessed): the "no top, pooling='avg'" features Keras would give.
 */
export function pooledFeatures(model: tf.LayersModel, layerName: string, inputs: Float32Array[], size: number): Float32Array[] {
  const sub = tf.model({ inputs: model.inputs, outputs: model.getLayer(layerName).output as tf.SymbolicTensor });
  return inputs.map((x) =>
    tf.tidy(() => {
      const t = tf.tensor4d(x, [1, size, size, 3]);
      const y = sub.predict(t) as tf.Tensor4D;
      return y.mean([1, 2]).dataSync() as Float32Array;
    }),
  );
}

export { tf };
