/**
 * Every backbone catdog knows: one file per architecture (its graph, preprocessing, width, weights
 * and runtime choices), one line here. Everything else reads them from BACKBONES.
 */
import { inceptionV3 } from './inception-v3.ts';
import { resnet50 } from './resnet50.ts';
import type { BackboneDefinition } from './types.ts';
import { poolingParts, type Pooling } from '../pooling.ts';
import { xception } from './xception.ts';

export type { BackboneDefinition } from './types.ts';

export const BACKBONES = {
  resnet50,
  inception_v3: inceptionV3,
  xception,
} satisfies Record<string, BackboneDefinition>;

/** Width of the fused vector of `backbones` (their features, concatenated in that order; both poolings each with `avg+max`). */
export function fusedWidth(backbones: readonly (keyof typeof BACKBONES)[], pooling: Pooling = 'avg'): number {
  return backbones.reduce((n, b) => n + BACKBONES[b].features * poolingParts(pooling), 0);
}
