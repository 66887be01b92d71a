/**
 * Evaluation metrics. Log loss is Kaggle's formula, -mean(y log p + (1 - y) log(1 - p)), with
 * probabilities clipped to [LOGLOSS_EPS, 1 - LOGLOSS_EPS] = [1e-15, 1 - 1e-15] (scikit-learn's
 * and Kaggle's own clipping): a perfectly confident wrong answer costs 34.5, not infinity.
 * Submissions are written unclipped-by-us except for this same bound.
 */
export const LOGLOSS_EPS = 1e-15;

export function clipProbability(p: number, eps = LOGLOSS_EPS): number {
  return Math.min(1 - eps, Math.max(eps, p));
}

export function logLoss(labels: ArrayLike<number>, probs: ArrayLike<number>, eps = LOGLOSS_EPS): number {
  if (labels.length !== probs.length) throw new Error('logLoss: labels and probabilities differ in length');
  if (labels.length === 0) return NaN;
  let s = 0;
  for (let i = 0; i < labels.length; i++) {
    const p = clipProbability(probs[i], eps);
    s += labels[i] ? -Math.log(p) : -Math.log(1 - p);
  }
  return s / labels.length;
}

export function accuracy(labels: ArrayLike<number>, probs: ArrayLike<number>): number {
  let ok = 0;
  for (let i = 0; i < labels.length; i++) if ((probs[i] >= 0.5 ? 1 : 0) === labels[i]) ok++;
  return labels.length ? ok / labels.length : NaN;
}

/** Rows: true class, columns: predicted class; 0 = cat, 1 = dog. */
export interface Confusion {
  catAsCat: number;
  catAsDog: number;
  dogAsCat: number;
  dogAsDog: number;
}

export function confusion(labels: ArrayLike<number>, probs: ArrayLike<number>): Confusion {
  const c: Confusion = { catAsCat: 0, catAsDog: 0, dogAsCat: 0, dogAsDog: 0 };
  for (let i = 0; i < labels.length; i++) {
    const pred = probs[i] >= 0.5;
    if (labels[i]) pred ? c.dogAsDog++ : c.dogAsCat++;
    else pred ? c.catAsDog++ : c.catAsCat++;
  }
  return c;
}

export function formatConfusion(c: Confusion): string {
  return ['            predicted cat  predicted dog', `true cat    ${String(c.catAsCat).padStart(13)}  ${String(c.catAsDog).padStart(13)}`, `true dog    ${String(c.dogAsCat).padStart(13)}  ${String(c.dogAsDog).padStart(13)}`].join('\n');
}

/** Indices of the n worst errors (highest per-sample log loss), worst first. */
export function worstErrors(labels: ArrayLike<number>, probs: ArrayLike<number>, n: number): number[] {
  const idx = Array.from({ length: labels.length }, (_, i) => i);
  const loss = (i: number) => -Math.log(clipProbability(labels[i] ? probs[i] : 1 - probs[i]));
  return idx.sort((a, b) => loss(b) - loss(a)).slice(0, n);
}
