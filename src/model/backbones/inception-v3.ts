/**
 * InceptionV3 (Szegedy et al. 2015) as Keras builds it (`keras/applications/inception_v3.py`),
 * without its top, with global average pooling. Every Conv2D has no bias and is followed by a
 * BatchNormalization with `scale=False` (no gamma) and epsilon 1e-3. Keras names none of them, so
 * weight files carry generated names (`conv2d_1`… or `conv2d_95`…): they are matched by order.
 */
import { LayerGraph, type Padding } from '../graph.ts';
import { kerasNotopWeights, type BackboneDefinition } from './types.ts';

export function buildInceptionV3(options: { top?: boolean } = {}): LayerGraph {
  const g = new LayerGraph('inception_v3', 299);
  const cbn = (x: string, filters: number, rows: number, cols: number, padding: Padding = 'same', strides = 1): string => {
    let y = g.conv(x, { filters, kernel: [rows, cols], strides, padding, useBias: false });
    y = g.bn(y, { scale: false, epsilon: 1e-3 });
    return g.relu(y);
  };
  const avg = (x: string) => g.pool('avgpool', x, { pool: 3, strides: 1, padding: 'same' });
  const max = (x: string) => g.pool('maxpool', x, { pool: 3, strides: 2 });

  let x = g.input();
  x = cbn(x, 32, 3, 3, 'valid', 2);
  x = cbn(x, 32, 3, 3, 'valid');
  x = cbn(x, 64, 3, 3);
  x = max(x);
  x = cbn(x, 80, 1, 1, 'valid');
  x = cbn(x, 192, 3, 3, 'valid');
  x = max(x);

  // mixed 0, 1, 2: 35 x 35
  for (const [i, poolFilters] of [32, 64, 64].entries()) {
    const b1 = cbn(x, 64, 1, 1);
    let b5 = cbn(x, 48, 1, 1);
    b5 = cbn(b5, 64, 5, 5);
    let b3 = cbn(x, 64, 1, 1);
    b3 = cbn(b3, 96, 3, 3);
    b3 = cbn(b3, 96, 3, 3);
    const bp = cbn(avg(x), poolFilters, 1, 1);
    x = g.concat([b1, b5, b3, bp], `mixed${i}`);
  }

  // mixed 3: 17 x 17
  {
    const b3 = cbn(x, 384, 3, 3, 'valid', 2);
    let bd = cbn(x, 64, 1, 1);
    bd = cbn(bd, 96, 3, 3);
    bd = cbn(bd, 96, 3, 3, 'valid', 2);
    const bp = max(x);
    x = g.concat([b3, bd, bp], 'mixed3');
  }

  // mixed 4, 5, 6, 7: 17 x 17
  for (const [i, f] of [128, 160, 160, 192].entries()) {
    const b1 = cbn(x, 192, 1, 1);
    let b7 = cbn(x, f, 1, 1);
    b7 = cbn(b7, f, 1, 7);
    b7 = cbn(b7, 192, 7, 1);
    let bd = cbn(x, f, 1, 1);
    bd = cbn(bd, f, 7, 1);
    bd = cbn(bd, f, 1, 7);
    bd = cbn(bd, f, 7, 1);
    bd = cbn(bd, 192, 1, 7);
    const bp = cbn(avg(x), 192, 1, 1);
    x = g.concat([b1, b7, bd, bp], `mixed${4 + i}`);
  }

  // mixed 8: 8 x 8
  {
    let b3 = cbn(x, 192, 1, 1);
    b3 = cbn(b3, 320, 3, 3, 'valid', 2);
    let b7 = cbn(x, 192, 1, 1);
    b7 = cbn(b7, 192, 1, 7);
    b7 = cbn(b7, 192, 7, 1);
    b7 = cbn(b7, 192, 3, 3, 'valid', 2);
    const bp = max(x);
    x = g.concat([b3, b7, bp], 'mixed8');
  }

  // mixed 9, 10: 8 x 8 x 2048
  for (let i = 0; i < 2; i++) {
    const b1 = cbn(x, 320, 1, 1);
    const b3 = cbn(x, 384, 1, 1);
    const b3a = cbn(b3, 384, 1, 3);
    const b3b = cbn(b3, 384, 3, 1);
    const b3c = g.concat([b3a, b3b], `mixed9_${i}`);
    let bd = cbn(x, 448, 1, 1);
    bd = cbn(bd, 384, 3, 3);
    const bda = cbn(bd, 384, 1, 3);
    const bdb = cbn(bd, 384, 3, 1);
    const bdc = g.concat([bda, bdb]);
    const bp = cbn(avg(x), 192, 1, 1);
    x = g.concat([b1, b3c, bdc, bp], `mixed${9 + i}`);
  }
  x = g.gap(x, 'avg_pool');
  if (options.top) g.dense(x, { name: 'predictions', units: 1000, activation: 'softmax' });
  return g;
}

export const inceptionV3: BackboneDefinition = {
  name: 'inception_v3',
  title: 'InceptionV3',
  arena: false,
  inputSize: 299,
  preprocess: 'tf',
  features: 2048,
  kerasWeights: kerasNotopWeights('inception_v3', 'inception_v3', 'bcbd6486424b2319ff4ef7d526e38f63'),
  defaultWeights: 'keras',
  build: (o) => buildInceptionV3({ top: o?.top }),
};
