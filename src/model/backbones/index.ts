import type { BackboneName } from '../types.ts';
import { inceptionV3 } from './inception-v3.ts';
import { resnet50 } from './resnet50.ts';
import type { BackboneDefinition } from './types.ts';
import { xception } from './xception.ts';

export type { BackboneDefinition } from './types.ts';

export const BACKBONES: Record<BackboneName, BackboneDefinition> = {
  resnet50,
  inception_v3: inceptionV3,
  xception,
};

/** The Kaggle solution's fused order: ResNet50, Xception, InceptionV3. */
export const SEED_ORDER: BackboneName[] = ['resnet50', 'xception', 'inception_v3'];

export function isBackboneName(s: string): s is BackboneName {
  return Object.hasOwn(BACKBONES, s);
}
