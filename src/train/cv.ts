/**
 * Honest model choice: k-fold cross-validation over all training photos, grouped so that a
 * photo's views (its mirror, its other scales) and identical copies of it (same content hash)
 * never straddle folds, stratified by label; out-of-fold (OOF) predictions for every photo; and
 * paired comparison of two candidates on the same photos, with a confidence interval for the
 * mean difference of per-photo log loss (and of accuracy).
 *
 * Everything here runs on cached features (ViewData), in seconds to minutes.
 */
import { rng } from '../model/weights/generate.ts';
import type { ViewSpec } from '../model/views.ts';
import { clipProbability, logLoss, accuracy } from './metrics.ts';
import { fitLogregL2, lbfgs, shuffledIndices, type LinearModel } from './fit.ts';

/**
 * Training photos (labelled) in a seeded random order, then the test photos: the order of
 * `catdog features --shuffle` (a run stopped early leaves a random sample cached) and the
 * sample of `catdog train --sample N` (its first N training photos).
 */
export function shuffledTrainFirst<T extends { label: number | null }>(samples: readonly T[], seed = 2018): T[] {
  const train = samples.filter((s) => s.label !== null);
  const order = shuffledIndices(train.length, seed);
  return [...Array.from(order, (i) => train[i]!), ...samples.filter((s) => s.label === null)];
}

/** Cached features of n photos under several views: x[v] is n x d, row i = photo i. */
export interface ViewData {
  views: ViewSpec[];
  x: Float32Array[];
  y: Uint8Array;
  n: number;
  d: number;
  /** Grouping key per photo (its content hash): equal keys share a fold. */
  groups: string[];
}

/**
 * Fold (0..k-1) of each photo. Groups are shuffled with a seeded PRNG, then dealt round-robin
 * within each label (by the group's first photo's label), so folds are balanced in size and
 * class. Deterministic for a given seed and photo order.
 */
export function assignFolds(groups: readonly string[], labels: ArrayLike<number>, k: number, seed = 2018): Int32Array {
  if (!Number.isInteger(k) || k < 2) throw new RangeError(`folds must be an integer >= 2, got ${k}`);
  const firstOf = new Map<string, number>();
  groups.forEach((g, i) => {
    if (!firstOf.has(g)) firstOf.set(g, i);
  });
  if (firstOf.size < k) throw new RangeError(`${firstOf.size} distinct photos cannot fill ${k} folds`);
  const r = rng(seed);
  const foldOf = new Map<string, number>();
  for (const label of [0, 1]) {
    const gs = [...firstOf].filter(([, i]) => labels[i] === label).map(([g]) => g);
    for (let i = gs.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [gs[i], gs[j]] = [gs[j]!, gs[i]!];
    }
    // Continue the deal where the other label stopped, so fold sizes differ by at most one.
    const offset = foldOf.size;
    gs.forEach((g, i) => foldOf.set(g, (offset + i) % k));
  }
  return Int32Array.from(groups, (g) => foldOf.get(g)!);
}

/** Rows of photos `idx` under views `views` (indices into data.views), stacked: view-major. */
export function stackRows(data: ViewData, idx: ArrayLike<number>, views: readonly number[]): Float32Array {
  const out = new Float32Array(idx.length * views.length * data.d);
  let r = 0;
  for (const v of views) {
    const xv = data.x[v]!;
    for (let i = 0; i < idx.length; i++, r++) out.set(xv.subarray(idx[i]! * data.d, (idx[i]! + 1) * data.d), r * data.d);
  }
  return out;
}

/** Mean over `views` of the features of photos `idx`. */
export function meanRows(data: ViewData, idx: ArrayLike<number>, views: readonly number[]): Float32Array {
  const out = new Float32Array(idx.length * data.d);
  for (const v of views) {
    const xv = data.x[v]!;
    for (let i = 0; i < idx.length; i++) {
      const src = idx[i]! * data.d;
      const dst = i * data.d;
      for (let j = 0; j < data.d; j++) out[dst + j] += xv[src + j]!;
    }
  }
  const inv = 1 / views.length;
  for (let j = 0; j < out.length; j++) out[j] *= inv;
  return out;
}

/** A linear head's logits for n rows of d features. */
export function linearLogits(x: Float32Array, n: number, d: number, m: LinearModel): Float64Array {
  const { w, b } = foldStandardisation(m);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let z = b;
    const off = i * d;
    for (let j = 0; j < d; j++) z += w[j]! * x[off + j]!;
    out[i] = z;
  }
  return out;
}

/** The standardisation folded into the weights: w' = w / s, b' = b - sum(w m / s). */
export function foldStandardisation(m: LinearModel): { w: Float32Array; b: number } {
  if (!m.mean || !m.scale) return { w: m.kernel, b: m.bias };
  const w = new Float32Array(m.kernel.length);
  let b = m.bias;
  for (let j = 0; j < w.length; j++) {
    const s = m.scale[j] === 0 ? 0 : m.kernel[j]! / m.scale[j]!;
    w[j] = s;
    b -= s * m.mean[j]!;
  }
  return { w, b };
}

export const sigmoid = (z: number): number => (z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z)));

/** How a linear head is trained and asked, in terms of the data's views. */
export interface LinearSpec {
  /** Views averaged at answer time (indices into data.views). */
  answerViews: number[];
  /** Views the head is trained on: 'mean' = one row per photo, the mean of answerViews; 'each' = one row per photo and view of trainViews. */
  train: 'mean' | 'each';
  trainViews?: number[];
  /** L2 strengths on standardised features; OOF predictions come for each. */
  l2: number[];
  /** Photos (indices) never used for training (e.g. cleaning); they are still predicted and scored. */
  exclude?: ReadonlySet<number>;
  maxIter?: number;
}

export interface OofResult {
  /** Per L2 strength (in spec order): out-of-fold logits, one per photo. */
  logits: Float64Array[];
  /** With `perView`: per L2 strength, per answer view (in spec order), each view's own out-of-fold logit. */
  viewLogits?: Float64Array[][];
  seconds: number;
}

/** Training rows for photos `idx` under a spec. */
export function trainRows(data: ViewData, idx: number[], spec: LinearSpec): { x: Float32Array; y: Uint8Array; n: number } {
  if (spec.train === 'mean') {
    return { x: meanRows(data, idx, spec.answerViews), y: Uint8Array.from(idx, (i) => data.y[i]!), n: idx.length };
  }
  const views = spec.trainViews ?? spec.answerViews;
  const y = new Uint8Array(idx.length * views.length);
  views.forEach((_, v) => idx.forEach((i, k) => (y[v * idx.length + k] = data.y[i]!)));
  return { x: stackRows(data, idx, views), y, n: idx.length * views.length };
}

/**
 * Out-of-fold logits of a linear head: for each fold, fit on the other folds' photos (less
 * `exclude`) along the L2 path (strongest first, warm-started), predict the fold's photos with
 * the mean of their answer views' features.
 */
export function oofLinear(
  data: ViewData,
  folds: Int32Array,
  spec: LinearSpec,
  o: { signal?: AbortSignal; onFold?: (k: number, of: number) => void; perView?: boolean } = {},
): OofResult {
  const t0 = performance.now();
  const k = Math.max(...folds) + 1;
  const logits = spec.l2.map(() => new Float64Array(data.n));
  const viewLogits = o.perView ? spec.l2.map(() => spec.answerViews.map(() => new Float64Array(data.n))) : undefined;
  for (let f = 0; f < k; f++) {
    o.signal?.throwIfAborted();
    const trainIdx: number[] = [];
    const testIdx: number[] = [];
    for (let i = 0; i < data.n; i++) {
      if (folds[i] === f) testIdx.push(i);
      else if (!spec.exclude?.has(i)) trainIdx.push(i);
    }
    const rows = trainRows(data, trainIdx, spec);
    const testX = meanRows(data, testIdx, spec.answerViews);
    const path = fitLogregL2({ x: rows.x, y: rows.y, n: rows.n, d: data.d }, spec.l2, { maxIter: spec.maxIter, signal: o.signal });
    path.forEach((m, s) => {
      const z = linearLogits(testX, testIdx.length, data.d, m);
      testIdx.forEach((i, r) => (logits[s]![i] = z[r]!));
      for (const [a, out] of (viewLogits?.[s] ?? []).entries()) {
        const zv = linearLogits(meanRows(data, testIdx, [spec.answerViews[a]!]), testIdx.length, data.d, m);
        testIdx.forEach((i, r) => (out[i] = zv[r]!));
      }
    });
    o.onFold?.(f + 1, k);
  }
  return { logits, viewLogits, seconds: (performance.now() - t0) / 1000 };
}

export const probsOf = (logits: ArrayLike<number>): Float64Array => Float64Array.from(logits as ArrayLike<number>, sigmoid);

/** Per-photo log loss (Kaggle's clipping). */
export function perPhotoLoss(y: ArrayLike<number>, p: ArrayLike<number>): Float64Array {
  return Float64Array.from({ length: y.length }, (_, i) => -Math.log(clipProbability(y[i] ? p[i]! : 1 - p[i]!)));
}

export interface Metrics {
  n: number;
  logloss: number;
  accuracy: number;
}

export function metricsOf(y: ArrayLike<number>, p: ArrayLike<number>, subset?: ArrayLike<number>): Metrics {
  if (!subset) return { n: y.length, logloss: logLoss(y, p), accuracy: accuracy(y, p) };
  const ys = Array.from(subset as ArrayLike<number>, (i) => y[i]!);
  const ps = Array.from(subset as ArrayLike<number>, (i) => p[i]!);
  return { n: ys.length, logloss: logLoss(ys, ps), accuracy: accuracy(ys, ps) };
}

export interface PairedComparison {
  n: number;
  /** Mean log loss of A and of B. */
  a: number;
  b: number;
  /** Mean of (loss B - loss A) per photo, its standard error and 95% interval: negative = B better. */
  diff: number;
  se: number;
  lo: number;
  hi: number;
  /** Accuracy of B minus accuracy of A, with its 95% interval (paired: only photos where they disagree count). */
  accDiff: number;
  accLo: number;
  accHi: number;
}

/**
 * Paired comparison of candidates A and B on the same photos. The interval is mean ± 1.96 SE of
 * the per-photo differences (the photos are the independent units; n is in the thousands, so
 * the normal approximation is sound). Optionally on a subset of the photos.
 */
export function pairedCompare(y: ArrayLike<number>, pA: ArrayLike<number>, pB: ArrayLike<number>, subset?: ArrayLike<number>): PairedComparison {
  const idx = subset ? Array.from(subset as ArrayLike<number>) : Array.from({ length: y.length }, (_, i) => i);
  const la = perPhotoLoss(y, pA);
  const lb = perPhotoLoss(y, pB);
  const n = idx.length;
  let sa = 0;
  let sb = 0;
  let sd = 0;
  let sdd = 0;
  let ca = 0;
  let cb = 0;
  let sAcc = 0;
  let sAcc2 = 0;
  for (const i of idx) {
    sa += la[i]!;
    sb += lb[i]!;
    const d = lb[i]! - la[i]!;
    sd += d;
    sdd += d * d;
    const okA = (pA[i]! >= 0.5 ? 1 : 0) === y[i] ? 1 : 0;
    const okB = (pB[i]! >= 0.5 ? 1 : 0) === y[i] ? 1 : 0;
    ca += okA;
    cb += okB;
    sAcc += okB - okA;
    sAcc2 += (okB - okA) ** 2;
  }
  const diff = sd / n;
  const se = Math.sqrt(Math.max(0, sdd / n - diff * diff) / Math.max(1, n - 1));
  const accDiff = sAcc / n;
  const accSe = Math.sqrt(Math.max(0, sAcc2 / n - accDiff * accDiff) / Math.max(1, n - 1));
  void ca;
  void cb;
  return {
    n,
    a: sa / n,
    b: sb / n,
    diff,
    se,
    lo: diff - 1.96 * se,
    hi: diff + 1.96 * se,
    accDiff,
    accLo: accDiff - 1.96 * accSe,
    accHi: accDiff + 1.96 * accSe,
  };
}

export function formatPaired(c: PairedComparison): string {
  const sign = (v: number, digits: number) => `${v >= 0 ? '+' : '−'}${Math.abs(v).toFixed(digits)}`;
  return `${c.a.toFixed(4)} → ${c.b.toFixed(4)} (Δ ${sign(c.diff, 4)}, 95% CI ${sign(c.lo, 4)} … ${sign(c.hi, 4)}; accuracy Δ ${sign(c.accDiff * 100, 2)} pts, CI ${sign(c.accLo * 100, 2)} … ${sign(c.accHi * 100, 2)})`;
}

/** Platt scaling p = sigmoid(a z + b) (a alone, b = 0: temperature 1/a), fitted by L-BFGS on logits z. */
export interface Calibration {
  kind: 'none' | 'temperature' | 'platt';
  a: number;
  b: number;
}

export function fitCalibration(z: ArrayLike<number>, y: ArrayLike<number>, kind: Calibration['kind']): Calibration {
  if (kind === 'none') return { kind, a: 1, b: 0 };
  const n = z.length;
  const f = (p: Float64Array, g: Float64Array) => {
    const a = p[0]!;
    const b = kind === 'platt' ? p[1]! : 0;
    let loss = 0;
    g.fill(0);
    for (let i = 0; i < n; i++) {
      const t = a * z[i]! + b;
      const lse = t > 0 ? t + Math.log1p(Math.exp(-t)) : Math.log1p(Math.exp(t));
      loss += lse - y[i]! * t;
      const d = sigmoid(t) - y[i]!;
      g[0]! += d * z[i]!;
      if (kind === 'platt') g[1]! += d;
    }
    g[0]! /= n;
    g[1]! /= n;
    return loss / n;
  };
  const p = lbfgs(f, Float64Array.from([1, 0]), { maxIter: 100, tol: 1e-10 });
  return { kind, a: p[0]!, b: kind === 'platt' ? p[1]! : 0 };
}

export const applyCalibration = (c: Calibration, z: number): number => c.a * z + c.b;

/**
 * Calibration judged out of fold too: for each fold, the calibration is fitted on the other
 * folds' OOF logits and applied to this fold's. Returns the calibrated OOF logits.
 */
export function crossFitCalibration(z: ArrayLike<number>, y: ArrayLike<number>, folds: Int32Array, kind: Calibration['kind']): Float64Array {
  return crossFit(
    folds,
    (tr) =>
      fitCalibration(
        tr.map((i) => z[i]!),
        tr.map((i) => y[i]!),
        kind,
      ),
    (c, i) => applyCalibration(c, z[i]!),
  );
}

/**
 * Cross-fitting: for each fold, `fit` on the other folds' rows (indices), then `apply` to each of
 * this fold's rows. Returns one value per row.
 */
function crossFit<M>(folds: Int32Array, fit: (train: number[]) => M, apply: (m: M, i: number) => number): Float64Array {
  const k = Math.max(...folds) + 1;
  const out = new Float64Array(folds.length);
  for (let f = 0; f < k; f++) {
    const tr: number[] = [];
    for (let i = 0; i < folds.length; i++) if (folds[i] !== f) tr.push(i);
    const m = fit(tr);
    for (let i = 0; i < folds.length; i++) if (folds[i] === f) out[i] = apply(m, i);
  }
  return out;
}

/**
 * Stacking: P(dog) = sigmoid(w · [z, extra…] + b), a logistic regression on a few columns (the
 * head's logit and, say, the ImageNet cat-vs-dog logit), fitted by L-BFGS with a tiny L2.
 */
export interface Stack {
  w: number[];
  b: number;
}

export function fitStack(cols: readonly ArrayLike<number>[], y: ArrayLike<number>, idx?: ArrayLike<number>): Stack {
  const rows = idx ? Array.from(idx) : [...Array(y.length).keys()];
  const k = cols.length;
  const n = rows.length;
  const f = (p: Float64Array, g: Float64Array) => {
    g.fill(0);
    let loss = 0;
    for (const i of rows) {
      let t = p[k]!;
      for (let j = 0; j < k; j++) t += p[j]! * cols[j]![i]!;
      loss += (t > 0 ? t + Math.log1p(Math.exp(-t)) : Math.log1p(Math.exp(t))) - y[i]! * t;
      const d = sigmoid(t) - y[i]!;
      for (let j = 0; j < k; j++) g[j]! += d * cols[j]![i]!;
      g[k]! += d;
    }
    const l2 = 1e-6;
    for (let j = 0; j <= k; j++) {
      g[j] = g[j]! / n + (j < k ? 2 * l2 * p[j]! : 0);
      if (j < k) loss += l2 * n * p[j]! * p[j]!;
    }
    return loss / n;
  };
  const init = new Float64Array(k + 1);
  init[0] = 1;
  const p = lbfgs(f, init, { maxIter: 200, tol: 1e-10 });
  return { w: Array.from(p.subarray(0, k)), b: p[k]! };
}

export const applyStack = (s: Stack, cols: readonly ArrayLike<number>[], i: number): number => cols.reduce((t, c, j) => t + s.w[j]! * c[i]!, s.b);

/** Stacking judged out of fold: each fold's stack is fitted on the other folds' OOF columns. */
export function crossFitStack(cols: readonly ArrayLike<number>[], y: ArrayLike<number>, folds: Int32Array): Float64Array {
  return crossFit(
    folds,
    (tr) => fitStack(cols, y, tr),
    (st, i) => applyStack(st, cols, i),
  );
}

/** The probability clip [eps, 1 − eps] with the lowest log loss on `p` (idx: rows to judge), from a small grid. */
export function bestClip(y: ArrayLike<number>, p: ArrayLike<number>, idx?: ArrayLike<number>): number {
  const rows = idx ? Array.from(idx) : [...Array(y.length).keys()];
  let best = 0;
  let bestLoss = Infinity;
  for (const eps of [0, 1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 2e-2]) {
    let s = 0;
    for (const i of rows) {
      const q = Math.min(1 - eps, Math.max(eps, p[i]!));
      s -= y[i] ? Math.log(Math.max(q, 1e-15)) : Math.log(Math.max(1 - q, 1e-15));
    }
    if (s < bestLoss) (bestLoss = s), (best = eps);
  }
  return best;
}

/** Clipping judged out of fold: each fold's clip is chosen on the other folds. Returns clipped probabilities. */
export function crossFitClip(y: ArrayLike<number>, p: ArrayLike<number>, folds: Int32Array): { p: Float64Array; eps: number[] } {
  const eps: number[] = [];
  const clipped = crossFit(
    folds,
    (tr) => {
      const e = bestClip(y, p, tr);
      eps.push(e);
      return e;
    },
    (e, i) => Math.min(1 - e, Math.max(e, p[i]!)),
  );
  return { p: clipped, eps };
}
