import type { BACKBONES } from './backbones/index.ts';

/** Names of the backbones (the keys of BACKBONES), as used in configuration, metadata and answers. */
export type BackboneName = keyof typeof BACKBONES;

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
  /** Precision of the backbone graphs that answered: fp32 or int8. */
  precision: 'fp32' | 'int8';
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
