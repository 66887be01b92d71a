/**
 * Head training on cached feature vectors.
 *
 * Recipes:
 * - `seed`: the Kaggle solution's — Dropout(0.5) → Dense(1, sigmoid), binary cross-entropy,
 *   Adadelta, batch 128, 8 epochs — in TF.js. Keras 2's Adadelta defaulted to learning rate 1.0
 *   (rho 0.95, epsilon 1e-7); TF.js's `tf.train.adadelta` defaults to 0.001, which barely moves in
 *   8 epochs, so we pass Keras's 1.0 explicitly.
 * - `logreg`: L2-regularised logistic regression on standardised features, fitted to convergence
 *   with L-BFGS (full batch, deterministic); the strength is chosen on the validation split.
 *
 * Both shuffle with a seeded PRNG (seed 2018 by default) and hold out the last 20% as validation,
 * as Keras's `validation_split` does after the seed's shuffle. Both produce the same head shape:
 * Dense(1) on (optionally standardised) features.
 */
import { initTf, tf } from '../model/tf.ts';
import { rng } from '../model/weights/generate.ts';
import { accuracy, logLoss } from './metrics.ts';

export interface TrainingSet {
  /** Row-major n x d features. */
  x: Float32Array;
  y: Uint8Array;
  n: number;
  d: number;
}

export interface EpochLog {
  epoch: number;
  loss: number;
  acc: number;
  valLoss: number;
  valAcc: number;
}

export interface FittedHead {
  recipe: string;
  kernel: Float32Array;
  bias: number;
  mean?: Float32Array;
  scale?: Float32Array;
  history: EpochLog[];
  /** Validation metrics of the final head. */
  valLoss: number;
  valAcc: number;
  /** Chosen hyper-parameters. */
  params: Record<string, number | string>;
}

export interface SplitOptions {
  seed?: number;
  validationSplit?: number;
}

/** Seeded Fisher-Yates permutation of 0..n-1. */
export function shuffledIndices(n: number, seed: number): Uint32Array {
  const r = rng(seed);
  const idx = new Uint32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    const t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
  }
  return idx;
}

/** Shuffles, then holds out the last `validationSplit` fraction (Keras's validation_split). */
export function split(data: TrainingSet, o: SplitOptions = {}): { train: TrainingSet; val: TrainingSet; trainIdx: Uint32Array; valIdx: Uint32Array } {
  const idx = shuffledIndices(data.n, o.seed ?? 2018);
  const nVal = Math.round(data.n * (o.validationSplit ?? 0.2));
  const nTrain = data.n - nVal;
  const take = (ids: Uint32Array): TrainingSet => {
    const x = new Float32Array(ids.length * data.d);
    const y = new Uint8Array(ids.length);
    ids.forEach((k, i) => {
      x.set(data.x.subarray(k * data.d, (k + 1) * data.d), i * data.d);
      y[i] = data.y[k];
    });
    return { x, y, n: ids.length, d: data.d };
  };
  const trainIdx = idx.slice(0, nTrain);
  const valIdx = idx.slice(nTrain);
  return { train: take(trainIdx), val: take(valIdx), trainIdx, valIdx };
}

export function predictLinear(set: TrainingSet, kernel: Float32Array, bias: number, mean?: Float32Array, scale?: Float32Array): Float64Array {
  const out = new Float64Array(set.n);
  const w = new Float32Array(kernel);
  let b = bias;
  if (mean && scale) {
    // Fold the standardisation into the weights: w' = w / s, b' = b - sum(w * m / s).
    for (let j = 0; j < set.d; j++) {
      const s = scale[j] === 0 ? 0 : kernel[j] / scale[j];
      w[j] = s;
      b -= s * mean[j];
    }
  }
  for (let i = 0; i < set.n; i++) {
    let z = b;
    const off = i * set.d;
    for (let j = 0; j < set.d; j++) z += w[j] * set.x[off + j];
    out[i] = z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
  }
  return out;
}

function standardiser(set: TrainingSet): { mean: Float32Array; scale: Float32Array } {
  const mean = new Float64Array(set.d);
  const sq = new Float64Array(set.d);
  for (let i = 0; i < set.n; i++) {
    const off = i * set.d;
    for (let j = 0; j < set.d; j++) {
      const v = set.x[off + j];
      mean[j] += v;
      sq[j] += v * v;
    }
  }
  const m = new Float32Array(set.d);
  const s = new Float32Array(set.d);
  for (let j = 0; j < set.d; j++) {
    m[j] = mean[j] / set.n;
    const variance = sq[j] / set.n - m[j] * m[j];
    s[j] = variance > 1e-12 ? Math.sqrt(variance) : 1;
  }
  return { mean: m, scale: s };
}

function standardise(set: TrainingSet, mean: Float32Array, scale: Float32Array): TrainingSet {
  const x = new Float32Array(set.x.length);
  for (let i = 0; i < set.n; i++) {
    const off = i * set.d;
    for (let j = 0; j < set.d; j++) x[off + j] = (set.x[off + j] - mean[j]) / scale[j];
  }
  return { ...set, x };
}

/**
 * Mean logistic loss + l2/2 |w|^2 and its gradient, for parameters [w (d), b].
 */
function lossAndGrad(set: TrainingSet, params: Float64Array, l2: number, grad: Float64Array): number {
  const { n, d, x, y } = set;
  grad.fill(0);
  let loss = 0;
  const b = params[d];
  for (let i = 0; i < n; i++) {
    const off = i * d;
    let z = b;
    for (let j = 0; j < d; j++) z += params[j] * x[off + j];
    // log(1 + e^z) - y z, computed stably.
    const lse = z > 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z));
    loss += lse - y[i] * z;
    const p = z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
    const g = p - y[i];
    for (let j = 0; j < d; j++) grad[j] += g * x[off + j];
    grad[d] += g;
  }
  let reg = 0;
  for (let j = 0; j <= d; j++) grad[j] /= n;
  for (let j = 0; j < d; j++) {
    reg += params[j] * params[j];
    grad[j] += l2 * params[j];
  }
  return loss / n + 0.5 * l2 * reg;
}

/** L-BFGS with a backtracking (Armijo) line search. */
export function lbfgs(
  f: (p: Float64Array, g: Float64Array) => number,
  x0: Float64Array,
  o: { maxIter?: number; memory?: number; tol?: number; onIter?: (iter: number, loss: number) => void; signal?: AbortSignal } = {},
): Float64Array {
  const m = o.memory ?? 10;
  const maxIter = o.maxIter ?? 300;
  const tol = o.tol ?? 1e-7;
  const n = x0.length;
  let x = Float64Array.from(x0);
  let g = new Float64Array(n);
  let fx = f(x, g);
  const S: Float64Array[] = [];
  const Y: Float64Array[] = [];
  const rho: number[] = [];
  const dot = (a: Float64Array, b: Float64Array) => {
    let s = 0;
    for (let i = 0; i < n; i++) s += a[i] * b[i];
    return s;
  };
  for (let iter = 0; iter < maxIter; iter++) {
    o.signal?.throwIfAborted();
    // Two-loop recursion: direction = -H g.
    const q = Float64Array.from(g);
    const alpha: number[] = [];
    for (let k = S.length - 1; k >= 0; k--) {
      alpha[k] = rho[k] * dot(S[k], q);
      for (let i = 0; i < n; i++) q[i] -= alpha[k] * Y[k][i];
    }
    const gamma = S.length ? dot(S[S.length - 1], Y[S.length - 1]) / dot(Y[S.length - 1], Y[S.length - 1]) : 1 / Math.max(1, Math.sqrt(dot(g, g)));
    for (let i = 0; i < n; i++) q[i] *= gamma;
    for (let k = 0; k < S.length; k++) {
      const beta = rho[k] * dot(Y[k], q);
      for (let i = 0; i < n; i++) q[i] += S[k][i] * (alpha[k] - beta);
    }
    const dir = q.map((v) => -v);
    let slope = dot(g, dir);
    if (slope >= 0) {
      // Not a descent direction: restart from steepest descent.
      S.length = Y.length = rho.length = 0;
      for (let i = 0; i < n; i++) dir[i] = -g[i];
      slope = dot(g, dir);
    }
    let step = 1;
    const xNew = new Float64Array(n);
    const gNew = new Float64Array(n);
    let fNew = Infinity;
    for (let tries = 0; tries < 30; tries++) {
      for (let i = 0; i < n; i++) xNew[i] = x[i] + step * dir[i];
      fNew = f(xNew, gNew);
      if (fNew <= fx + 1e-4 * step * slope) break;
      step /= 2;
    }
    if (!(fNew < fx + 1e-4 * step * slope) && !(fNew <= fx)) break;
    const s = new Float64Array(n);
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      s[i] = xNew[i] - x[i];
      y[i] = gNew[i] - g[i];
    }
    const sy = dot(s, y);
    if (sy > 1e-12) {
      S.push(s);
      Y.push(y);
      rho.push(1 / sy);
      if (S.length > m) S.shift(), Y.shift(), rho.shift();
    }
    const improvement = fx - fNew;
    x = Float64Array.from(xNew);
    g = Float64Array.from(gNew);
    fx = fNew;
    o.onIter?.(iter, fx);
    if (improvement < tol * Math.max(1, Math.abs(fx))) break;
  }
  return x;
}

/** A linear head: Dense(1) on (optionally standardised) features. */
export interface LinearModel {
  kernel: Float32Array;
  bias: number;
  mean?: Float32Array;
  scale?: Float32Array;
  l2?: number;
}

/**
 * L2 logistic regressions on all of `set` (no validation split) along a path of strengths,
 * strongest first, each warm-started from the previous; one model per strength, in the order
 * given. The features are standardised with `set`'s own statistics, in place when `inPlace`
 * (the caller's copy is consumed, which halves the memory for large stacked sets).
 */
export function fitLogregL2(set: TrainingSet, l2s: readonly number[], o: { maxIter?: number; signal?: AbortSignal; inPlace?: boolean } = {}): LinearModel[] {
  const { mean, scale } = standardiser(set);
  const tr = o.inPlace ?? true ? standardiseInPlace(set, mean, scale) : standardise(set, mean, scale);
  const order = l2s.map((l2, i) => ({ l2, i })).sort((a, b) => b.l2 - a.l2);
  const out: LinearModel[] = new Array(l2s.length);
  let start: Float64Array = new Float64Array(set.d + 1);
  for (const { l2, i } of order) {
    const params = lbfgs((p, g) => lossAndGrad(tr, p, l2, g), start, { maxIter: o.maxIter ?? 200, signal: o.signal });
    start = params;
    out[i] = { kernel: Float32Array.from(params.subarray(0, set.d)), bias: params[set.d], mean, scale, l2 };
  }
  return out;
}

function standardiseInPlace(set: TrainingSet, mean: Float32Array, scale: Float32Array): TrainingSet {
  const { x } = set;
  for (let i = 0; i < set.n; i++) {
    const off = i * set.d;
    for (let j = 0; j < set.d; j++) x[off + j] = (x[off + j] - mean[j]) / scale[j];
  }
  return set;
}

/** L2 strengths tried by default, on standardised features. */
export const DEFAULT_L2_GRID = [0.1, 0.03, 0.01, 0.003, 0.001];

export interface LogregOptions extends SplitOptions {
  /** L2 strengths to try (on standardised features); the best validation log loss wins. */
  l2?: number[];
  maxIter?: number;
  signal?: AbortSignal;
  onProgress?: (message: string) => void;
}

export function fitLogreg(data: TrainingSet, o: LogregOptions = {}): FittedHead {
  const { train, val } = split(data, o);
  const { mean, scale } = standardiser(train);
  const tr = standardise(train, mean, scale);
  const va = standardise(val, mean, scale);
  // Strongest regularisation first; each fit starts from the previous solution (warm start).
  const grid = [...(o.l2 ?? DEFAULT_L2_GRID)].sort((a, b) => b - a);
  let best: FittedHead | null = null;
  const history: EpochLog[] = [];
  let start: Float64Array = new Float64Array(data.d + 1);
  for (const l2 of grid) {
    const params = lbfgs((p, g) => lossAndGrad(tr, p, l2, g), start, { maxIter: o.maxIter ?? 200, signal: o.signal });
    start = params;
    const kernel = Float32Array.from(params.subarray(0, data.d));
    const bias = params[data.d];
    const pTrain = predictLinear(tr, kernel, bias);
    const pVal = predictLinear(va, kernel, bias);
    const log: EpochLog = { epoch: history.length + 1, loss: logLoss(tr.y, pTrain), acc: accuracy(tr.y, pTrain), valLoss: logLoss(va.y, pVal), valAcc: accuracy(va.y, pVal) };
    history.push(log);
    o.onProgress?.(`logreg l2=${l2}: train loss ${log.loss.toFixed(4)}, val loss ${log.valLoss.toFixed(4)}, val acc ${(log.valAcc * 100).toFixed(2)}%`);
    if (!best || log.valLoss < best.valLoss) {
      best = { recipe: 'logreg', kernel, bias, mean, scale, history, valLoss: log.valLoss, valAcc: log.valAcc, params: { l2, l2Grid: grid.join(','), seed: o.seed ?? 2018, validationSplit: o.validationSplit ?? 0.2 } };
    }
  }
  return { ...best!, history };
}

export interface SeedRecipeOptions extends SplitOptions {
  epochs?: number;
  batchSize?: number;
  learningRate?: number;
  dropout?: number;
  signal?: AbortSignal;
  onEpoch?: (log: EpochLog) => void;
}

/** The Kaggle solution's head, trained with TF.js. */
export async function fitSeedRecipe(data: TrainingSet, o: SeedRecipeOptions = {}): Promise<FittedHead> {
  const { train, val } = split(data, o);
  const seed = o.seed ?? 2018;
  await initTf();
  const model = tf.sequential();
  model.add(tf.layers.dropout({ rate: o.dropout ?? 0.5, inputShape: [data.d], seed }));
  model.add(tf.layers.dense({ units: 1, activation: 'sigmoid', kernelInitializer: tf.initializers.glorotUniform({ seed }) }));
  model.compile({ optimizer: tf.train.adadelta(o.learningRate ?? 1.0, 0.95, 1e-7), loss: 'binaryCrossentropy', metrics: ['accuracy'] });
  const xs = tf.tensor2d(train.x, [train.n, data.d]);
  const ys = tf.tensor2d(Float32Array.from(train.y), [train.n, 1]);
  const xv = tf.tensor2d(val.x, [val.n, data.d]);
  const yv = tf.tensor2d(Float32Array.from(val.y), [val.n, 1]);
  const history: EpochLog[] = [];
  const epochs = o.epochs ?? 8;
  try {
    // Keras shuffles the training photos every epoch; TF.js's own `shuffle` draws on Math.random,
    // so the order is dealt here from the seeded PRNG and the same data always gives the same head.
    for (let epoch = 0; epoch < epochs && !o.signal?.aborted; epoch++) {
      const order = tf.tensor1d(Int32Array.from(shuffledIndices(train.n, seed + 1 + epoch)), 'int32');
      const xe = tf.gather(xs, order);
      const ye = tf.gather(ys, order);
      try {
        await model.fit(xe, ye, {
          batchSize: o.batchSize ?? 128,
          epochs: epoch + 1,
          initialEpoch: epoch,
          shuffle: false,
          validationData: [xv, yv],
          verbose: 0,
          callbacks: {
            onEpochEnd: async (e, logs) => {
              const log = { epoch: e + 1, loss: logs!.loss, acc: logs!.acc, valLoss: logs!.val_loss, valAcc: logs!.val_acc };
              history.push(log);
              o.onEpoch?.(log);
            },
          },
        });
      } finally {
        tf.dispose([order, xe, ye]);
      }
    }
    o.signal?.throwIfAborted();
    const dense = model.layers[1];
    const [k, b] = dense.getWeights();
    const kernel = Float32Array.from(k.dataSync());
    const bias = b.dataSync()[0];
    // Validation metrics with the Kaggle log loss (clipping 1e-15), on the same head the product uses.
    const pVal = predictLinear(val, kernel, bias);
    return {
      recipe: 'seed',
      kernel,
      bias,
      history,
      valLoss: logLoss(val.y, pVal),
      valAcc: accuracy(val.y, pVal),
      params: { epochs: o.epochs ?? 8, batchSize: o.batchSize ?? 128, learningRate: o.learningRate ?? 1.0, optimizer: 'adadelta', seed, validationSplit: o.validationSplit ?? 0.2 },
    };
  } finally {
    tf.dispose([xs, ys, xv, yv]);
    model.dispose();
  }
}
