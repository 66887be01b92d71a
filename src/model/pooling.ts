/**
 * How a head reads a backbone's last feature map: its global average (`avg`, Keras's `pooling='avg'`,
 * the original solution) or the average and the global maximum side by side (`avg+max`). Every
 * exported graph gives both (`features` and `maxpooled`, export.ts), and the feature cache keeps both.
 *
 * Under `avg+max` each backbone's part of the fused vector is [average, maximum], each averaged over
 * the views; the backbones follow one another in the head's order.
 */
import { ModelError } from '../errors.ts';

export type Pooling = 'avg' | 'avg+max';
export const POOLINGS: readonly Pooling[] = ['avg', 'avg+max'];

export function parsePooling(s: string): Pooling {
  const p = s.trim() as Pooling;
  if (!POOLINGS.includes(p)) throw new ModelError('pooling_format', `"${s}" is not a pooling: use ${POOLINGS.join(' or ')}.`);
  return p;
}

/** How many pooled vectors of a backbone's width a head reads per backbone. */
export function poolingParts(pooling: Pooling): number {
  return pooling === 'avg+max' ? 2 : 1;
}
