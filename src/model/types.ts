import type { BACKBONES } from './backbones/index.ts';

/** Names of the backbones (the keys of BACKBONES), as used in configuration, metadata and answers. */
export type BackboneName = keyof typeof BACKBONES;

/** Numeric precision of one backbone's graph: fp32, or int8 QDQ quantized from it. */
export type Precision = 'fp32' | 'int8';

/** The precision each backbone ran in. */
export type Precisions = Partial<Record<BackboneName, Precision>>;

/**
 * What answered, in words: "int8" or "fp32" when every backbone ran in it, else each one's, in
 * fused order ("resnet50 int8 + inception_v3 fp32").
 */
export function precisionLabel(p: Precisions, order: readonly BackboneName[]): string {
  const each = order.map((b) => p[b] ?? 'fp32');
  if (each.every((x) => x === each[0])) return each[0] ?? 'fp32';
  return order.map((b, i) => `${b} ${each[i]}`).join(' + ');
}

export interface ImagenetGuess {
  /** ImageNet class index 0..999. */
  index: number;
  label: string;
  p: number;
}

export interface Prediction {
  /** Probability that the photo shows a dog (0..1), from the active head. */
  dog: number;
  /** 'neither' when the ImageNet top says the photo holds no cat or dog. */
  label: 'dog' | 'cat' | 'neither';
  /** Active backbones, in the fused-feature order the head was trained with. */
  backbones: BackboneName[];
  /** Precision of the backbone graphs that answered (precisionLabel: "int8", "fp32", or each backbone's). */
  precision: string;
  /** Identity of the head that answered. */
  model: string;
  /** ResNet50's ImageNet top-k (fc1000), best first. Empty when the ResNet50 top is unavailable. */
  imagenetTop: ImagenetGuess[];
  timings: { decodeMs: number; backbonesMs: Partial<Record<BackboneName, number>>; headMs: number; totalMs: number };
}

/** What the doors (CLI, bot, web, jobs) need from the classifier. */
export interface ImageClassifier {
  classify(bytes: Uint8Array, options?: { signal?: AbortSignal }): Promise<Prediction>;
}
