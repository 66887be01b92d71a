/**
 * Xception (Chollet 2017) as Keras builds it (`keras/applications/xception.py`), without its top,
 * with global average pooling. Convolutions have no bias; batch norms use epsilon 1e-3. The four
 * residual 1x1 convolutions and their batch norms are unnamed in Keras (generated names, matched
 * by order); every other layer is matched by name.
 */
import { LayerGraph } from '../graph.ts';
import { kerasNotopWeights, type BackboneDefinition } from './types.ts';

export function buildXception(options: { top?: boolean } = {}): LayerGraph {
  const g = new LayerGraph('xception', 299);
  const sep = (x: string, filters: number, name: string) =>
    g.bn(g.sepConv(x, { name, filters, kernel: 3, padding: 'same', useBias: false }), { name: `${name}_bn` });
  const residual = (x: string, filters: number) =>
    g.bn(g.conv(x, { filters, kernel: 1, strides: 2, padding: 'same', useBias: false }));

  let x = g.input();
  x = g.conv(x, { name: 'block1_conv1', filters: 32, kernel: 3, strides: 2, useBias: false });
  x = g.relu(g.bn(x, { name: 'block1_conv1_bn' }), 'block1_conv1_act');
  x = g.conv(x, { name: 'block1_conv2', filters: 64, kernel: 3, useBias: false });
  x = g.relu(g.bn(x, { name: 'block1_conv2_bn' }), 'block1_conv2_act');

  // Entry flow: blocks 2-4 (block 2 starts without an activation).
  for (const [i, filters] of [128, 256, 728].entries()) {
    const b = `block${i + 2}`;
    const r = residual(x, filters);
    if (i > 0) x = g.relu(x, `${b}_sepconv1_act`);
    x = sep(x, filters, `${b}_sepconv1`);
    x = g.relu(x, `${b}_sepconv2_act`);
    x = sep(x, filters, `${b}_sepconv2`);
    x = g.pool('maxpool', x, { name: `${b}_pool`, pool: 3, strides: 2, padding: 'same' });
    x = g.addLayers([x, r]);
  }

  // Middle flow: blocks 5-12.
  for (let i = 5; i <= 12; i++) {
    const r = x;
    for (let j = 1; j <= 3; j++) {
      x = g.relu(x, `block${i}_sepconv${j}_act`);
      x = sep(x, 728, `block${i}_sepconv${j}`);
    }
    x = g.addLayers([x, r]);
  }

  // Exit flow.
  const r = residual(x, 1024);
  x = g.relu(x, 'block13_sepconv1_act');
  x = sep(x, 728, 'block13_sepconv1');
  x = g.relu(x, 'block13_sepconv2_act');
  x = sep(x, 1024, 'block13_sepconv2');
  x = g.pool('maxpool', x, { name: 'block13_pool', pool: 3, strides: 2, padding: 'same' });
  x = g.addLayers([x, r]);
  x = g.relu(sep(x, 1536, 'block14_sepconv1'), 'block14_sepconv1_act');
  x = g.relu(sep(x, 2048, 'block14_sepconv2'), 'block14_sepconv2_act');
  x = g.gap(x, 'avg_pool');
  if (options.top) g.dense(x, { name: 'predictions', units: 1000, activation: 'softmax' });
  return g;
}

export const xception: BackboneDefinition = {
  name: 'xception',
  title: 'Xception',
  arena: true,
  inputSize: 299,
  preprocess: 'tf',
  features: 2048,
  kerasWeights: kerasNotopWeights('xception', 'xception', 'b0042744bf5b25fce3cb969f33bebb97'),
  defaultWeights: 'keras',
  build: (o) => buildXception({ top: o?.top }),
};
