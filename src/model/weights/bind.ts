/**
 * Matches a weight file's layers to a backbone's layers, the way Keras would load them:
 * named layers by name (or a known alias, e.g. Keras 2.2 ResNet names), layers Keras leaves
 * unnamed by creation order within their class (`conv2d_4`, `conv2d_5`… sorted by number).
 * Every weight's shape is checked; anything missing or left over is a clear ModelError.
 */
import { ModelError } from '../../errors.ts';
import type { BackboneDefinition } from '../backbones/types.ts';
import { KERAS_AUTO_PREFIX, type LayerGraph, type LayerNode, type WeightedOp } from '../graph.ts';
import type { FileLayer, WeightRole, WeightSource, WeightTensor } from './types.ts';

export type LayerWeights = Partial<Record<WeightRole, WeightTensor>>;

export interface BoundBackbone {
  definition: BackboneDefinition;
  graph: LayerGraph;
  /** Weights per graph layer name. */
  weights: Map<string, LayerWeights>;
  /** True when the file had the ImageNet top and the graph includes it. */
  hasTop: boolean;
  source: WeightSource;
}

function expectedShapes(graph: LayerGraph, n: LayerNode): Partial<Record<WeightRole, number[]>> {
  const cin = n.inputs.length ? graph.node(n.inputs[0]).shape.c : 0;
  switch (n.op) {
    case 'conv':
      return { kernel: [n.kernel[0], n.kernel[1], cin, n.filters], ...(n.useBias ? { bias: [n.filters] } : {}) };
    case 'sepconv':
      return {
        depthwise_kernel: [n.kernel[0], n.kernel[1], cin, 1],
        pointwise_kernel: [1, 1, cin, n.filters],
        ...(n.useBias ? { bias: [n.filters] } : {}),
      };
    case 'bn':
      return {
        ...(n.scale ? { gamma: [n.shape.c] } : {}),
        ...(n.center ? { beta: [n.shape.c] } : {}),
        moving_mean: [n.shape.c],
        moving_variance: [n.shape.c],
      };
    case 'dense':
      return { kernel: [cin, n.units], bias: [n.units] };
    default:
      return {};
  }
}

const autoIndex = (prefix: string, name: string): number | null => {
  if (name === prefix) return 0;
  const m = new RegExp(`^${prefix}_(\\d+)$`).exec(name);
  return m ? Number(m[1]) : null;
};

const TOP_NAMES = ['predictions', 'fc1000'];

export function bindWeights(definition: BackboneDefinition, source: WeightSource): BoundBackbone {
  const byName = new Map(source.layers.map((l) => [l.name, l]));
  const fileNames = new Set(byName.keys());
  const bnEpsilon = source.layers.find((l) => l.epsilon !== undefined)?.epsilon;
  const epsilon = bnEpsilon ?? definition.defaultEpsilon?.(fileNames);
  const topLayer = TOP_NAMES.map((n) => byName.get(n)).find((l) => l?.weights.kernel?.shape[1] === 1000);
  const graph = definition.build({ epsilon, top: Boolean(topLayer) });

  const used = new Set<FileLayer>();
  const matched = new Map<string, FileLayer>();
  const missing: string[] = [];

  // Generated names, per class, sorted by their number.
  const autoPools = new Map<string, FileLayer[]>();
  for (const op of Object.keys(KERAS_AUTO_PREFIX) as WeightedOp[]) {
    const prefix = KERAS_AUTO_PREFIX[op];
    const pool = source.layers
      .map((l) => ({ l, i: autoIndex(prefix, l.name) }))
      .filter((x): x is { l: FileLayer; i: number } => x.i !== null)
      .sort((a, b) => a.i - b.i)
      .map((x) => x.l);
    autoPools.set(op, pool);
  }
  const autoNext = new Map<string, number>();

  for (const n of graph.weighted()) {
    let layer: FileLayer | undefined;
    if (!n.auto) {
      layer = byName.get(n.name);
      for (const alias of definition.aliases?.(n.name) ?? []) layer ??= byName.get(alias);
      if (!layer && n.op === 'dense' && topLayer) layer = topLayer;
    } else {
      const pool = autoPools.get(n.op) ?? [];
      const k = autoNext.get(n.op) ?? 0;
      layer = pool[k];
      autoNext.set(n.op, k + 1);
    }
    if (!layer || used.has(layer)) {
      missing.push(n.name);
      continue;
    }
    used.add(layer);
    matched.set(n.name, layer);
  }
  if (missing.length) {
    throw new ModelError(
      'weights_mismatch',
      `The weights (${source.description}) do not fit ${definition.title}: no weights for ${missing.length} layer(s), e.g. ${missing.slice(0, 5).join(', ')}.`,
    );
  }

  const weights = new Map<string, LayerWeights>();
  for (const n of graph.weighted()) {
    const layer = matched.get(n.name)!;
    const expected = expectedShapes(graph, n);
    const w: LayerWeights = {};
    for (const [role, shape] of Object.entries(expected) as [WeightRole, number[]][]) {
      const t = layer.weights[role];
      if (!t) throw new ModelError('weights_mismatch', `${definition.title} layer ${n.name}: the file's layer ${layer.name} has no ${role}.`);
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        throw new ModelError(
          'weights_mismatch',
          `${definition.title} layer ${n.name}: ${role} has shape [${t.shape}] in the file (layer ${layer.name}), expected [${shape}].`,
        );
      }
      w[role] = t;
    }
    weights.set(n.name, w);
  }
  const leftover = source.layers.filter((l) => !used.has(l));
  if (leftover.length) {
    throw new ModelError(
      'weights_mismatch',
      `The weights (${source.description}) have ${leftover.length} layer(s) that ${definition.title} does not use, e.g. ${leftover
        .slice(0, 5)
        .map((l) => l.name)
        .join(', ')}.`,
    );
  }
  return { definition, graph, weights, hasTop: Boolean(topLayer), source };
}
