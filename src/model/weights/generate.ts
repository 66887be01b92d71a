/**
 * Generated weights for a backbone: deterministic (seeded), with He-scaled kernels and batch-norm
 * statistics away from the identity, so activations keep a sane scale through the whole network.
 * They stand in for ImageNet weights where those cannot be had: for timing (speed does not depend
 * on the values) and for checking our graphs against Keras topologies run by TF.js.
 */
import type { BackboneDefinition } from '../backbones/types.ts';
import type { LayerGraph } from '../graph.ts';
import type { FileLayer, WeightSource, WeightTensor } from './types.ts';

/** mulberry32: a small, fast, seeded PRNG. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function tensor(shape: number[], f: () => number): WeightTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) values[i] = f();
  return { shape, values };
}

/** Weights for every weighted layer of `graph`, named as the graph names them. */
export function generateWeights(definition: BackboneDefinition, seed = 2018, options: { top?: boolean } = {}): WeightSource {
  const graph: LayerGraph = definition.build({ top: options.top });
  const r = rng(seed);
  const uniform = (lo: number, hi: number) => () => lo + (hi - lo) * r();
  // Irwin-Hall approximation of a standard normal: cheap and good enough for weights.
  const normal = (std: number) => () => (r() + r() + r() + r() - 2) * Math.sqrt(3) * std;
  const layers: FileLayer[] = [];
  for (const n of graph.weighted()) {
    const cin = graph.node(n.inputs[0]).shape.c;
    const w: FileLayer['weights'] = {};
    if (n.op === 'conv') {
      w.kernel = tensor([n.kernel[0], n.kernel[1], cin, n.filters], normal(Math.sqrt(2 / (n.kernel[0] * n.kernel[1] * cin))));
      if (n.useBias) w.bias = tensor([n.filters], uniform(-0.1, 0.1));
    } else if (n.op === 'sepconv') {
      w.depthwise_kernel = tensor([n.kernel[0], n.kernel[1], cin, 1], normal(Math.sqrt(2 / (n.kernel[0] * n.kernel[1]))));
      w.pointwise_kernel = tensor([1, 1, cin, n.filters], normal(Math.sqrt(2 / cin)));
      if (n.useBias) w.bias = tensor([n.filters], uniform(-0.1, 0.1));
    } else if (n.op === 'bn') {
      const c = n.shape.c;
      if (n.scale) w.gamma = tensor([c], uniform(0.5, 1.5));
      if (n.center) w.beta = tensor([c], uniform(-0.2, 0.2));
      w.moving_mean = tensor([c], uniform(-0.2, 0.2));
      w.moving_variance = tensor([c], uniform(0.5, 2));
    } else if (n.op === 'dense') {
      w.kernel = tensor([cin, n.units], normal(Math.sqrt(1 / cin)));
      w.bias = tensor([n.units], uniform(-0.1, 0.1));
    }
    layers.push({ name: n.name, weights: w });
  }
  return { description: `generated weights (seed ${seed})`, format: 'generated', id: `generated-${definition.name}-${seed}`, layers };
}
