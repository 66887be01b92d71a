/**
 * "Neither a cat nor a dog": when does a photo not show one? Two rules on ResNet50's ImageNet
 * probabilities (1000 classes; cats 281-287, dogs 151-268, see imagenet.ts):
 * - 'top10' (the original): no cat or dog class among the 10 most probable classes. It answers
 *   "neither" for about 1% of real cat and dog photos (a cat named by its basket or its box);
 * - 'mass': the cat and dog classes' total probability is below a threshold;
 * - 'mass+novelty': that, and the photo's ResNet50 features (224 px) are unlike cats' and dogs':
 *   their cosine similarity to the nearer of the two class centroids of the training photos is
 *   below a second threshold. ImageNet gives other animals (horses, a giraffe, an eagle) a few
 *   percent of dog probability, as much as a real cat in a basket gets, so the mass alone cannot
 *   tell them apart; the cat in the basket still looks like a cat to the features.
 * Thresholds are calibrated on the training photos (all real cats and dogs, so a "neither" there
 * counts as false) and on photos of neither (`scripts/neither.ts`). A head records the rule it was
 * shipped with; a head without one uses 'top10'.
 */
import { cosine } from './vectors.ts';
import { isCatOrDogClass, topK } from './imagenet.ts';

export type NeitherRule =
  | { rule: 'top10' }
  | { rule: 'mass'; threshold: number }
  | { rule: 'mass+novelty'; threshold: number; cosine: number; centroids: number[][] };

export const DEFAULT_NEITHER: NeitherRule = { rule: 'top10' };

/** Total probability of the cat and dog classes. */
export function catDogMass(probs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < probs.length; i++) if (isCatOrDogClass(i)) s += probs[i]!;
  return s;
}

/**
 * Whether a photo shows neither a cat nor a dog, from the ImageNet probabilities of its views
 * that are not mirrored (their mean when there are several).
 */
export function isNeither(rule: NeitherRule, probs: readonly ArrayLike<number>[], features?: ArrayLike<number> | null): boolean {
  const p = probs.filter((x) => x && x.length);
  if (!p.length) return false;
  if (rule.rule === 'top10') return !topK(p[0]!, 10).some((g) => isCatOrDogClass(g.index));
  const mass = p.reduce((s, x) => s + catDogMass(x), 0) / p.length;
  if (mass >= rule.threshold) return false;
  if (rule.rule === 'mass') return true;
  if (!features) return true;
  return centroidSimilarity(features, rule.centroids) < rule.cosine;
}

/** Cosine similarity of a feature vector to the nearest of the centroids. */
export function centroidSimilarity(x: ArrayLike<number>, centroids: readonly ArrayLike<number>[]): number {
  let best = -1;
  for (const c of centroids) best = Math.max(best, cosine(x, c));
  return best;
}

/** Whether a rule needs the 224 px ResNet50 features. */
export const needsFeatures = (rule: NeitherRule): boolean => rule.rule === 'mass+novelty';

export function validNeither(r: NeitherRule): boolean {
  if (r.rule === 'top10') return true;
  if (!(r.threshold > 0 && r.threshold < 1)) return false;
  if (r.rule === 'mass') return true;
  return r.rule === 'mass+novelty' && r.cosine > -1 && r.cosine < 1 && Array.isArray(r.centroids) && r.centroids.length > 0 && r.centroids.every((c) => c.length === 2048 && c.every(Number.isFinite));
}
