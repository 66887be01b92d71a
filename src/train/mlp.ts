/**
 * A small MLP head in TF.js (wasm): standardised features → Dense(hidden, relu) → Dropout →
 * Dense(1, sigmoid), Adam, binary cross-entropy, a fixed number of epochs (no early stopping on
 * the fold being predicted). Used in cross-validation to see whether a non-linear head beats the
 * L2 logistic regression on the same cached features.
 */
import { initTf, tf } from '../model/tf.ts';

export interface MlpOptions {
  hidden?: number;
  dropout?: number;
  epochs?: number;
  batchSize?: number;
  learningRate?: number;
  /** L2 on the kernels. */
  l2?: number;
  seed?: number;
  signal?: AbortSignal;
}

export interface FittedMlp {
  /** Logits for n rows of d (unstandardised) features. */
  logits(x: Float32Array, n: number): Promise<Float64Array>;
  dispose(): void;
}

export async function fitMlp(x: Float32Array, y: Uint8Array, n: number, d: number, o: MlpOptions = {}): Promise<FittedMlp> {
  await initTf();
  const seed = o.seed ?? 2018;
  const mean = new Float32Array(d);
  const sq = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) {
    const v = x[i * d + j]!;
    mean[j] += v / n;
    sq[j] += (v * v) / n;
  }
  const inv = Float32Array.from(mean, (m, j) => {
    const variance = sq[j]! - m * m;
    return variance > 1e-12 ? 1 / Math.sqrt(variance) : 1;
  });
  const standardise = (a: Float32Array, rows: number) => {
    const out = new Float32Array(a.length);
    for (let i = 0; i < rows; i++) for (let j = 0; j < d; j++) out[i * d + j] = (a[i * d + j]! - mean[j]!) * inv[j]!;
    return out;
  };
  const reg = o.l2 ? tf.regularizers.l2({ l2: o.l2 }) : undefined;
  const model = tf.sequential();
  model.add(tf.layers.dropout({ rate: 0.2, inputShape: [d], seed }));
  model.add(tf.layers.dense({ units: o.hidden ?? 256, activation: 'relu', kernelInitializer: tf.initializers.heNormal({ seed }), kernelRegularizer: reg }));
  model.add(tf.layers.dropout({ rate: o.dropout ?? 0.5, seed: seed + 1 }));
  model.add(tf.layers.dense({ units: 1, kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 2 }), kernelRegularizer: reg }));
  model.compile({ optimizer: tf.train.adam(o.learningRate ?? 1e-3), loss: (yt: tf.Tensor, z: tf.Tensor) => tf.losses.sigmoidCrossEntropy(yt, z) });
  const xs = tf.tensor2d(standardise(x, n), [n, d]);
  const ys = tf.tensor2d(Float32Array.from(y), [n, 1]);
  try {
    await model.fit(xs, ys, {
      batchSize: o.batchSize ?? 128,
      epochs: o.epochs ?? 10,
      shuffle: true,
      verbose: 0,
      callbacks: {
        onEpochEnd: async () => {
          if (o.signal?.aborted) model.stopTraining = true;
        },
      },
    });
  } finally {
    tf.dispose([xs, ys]);
  }
  o.signal?.throwIfAborted();
  return {
    async logits(a, rows) {
      const t = tf.tensor2d(standardise(a, rows), [rows, d]);
      const z = model.predict(t) as tf.Tensor;
      const out = Float64Array.from(await z.data());
      tf.dispose([t, z]);
      return out;
    },
    dispose() {
      model.dispose();
    },
  };
}
