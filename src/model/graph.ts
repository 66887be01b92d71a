/**
 * A small layer graph in Keras's terms: the three backbones are written against this builder with
 * Keras's layer names, in Keras's creation order, and `onnx/export.ts` turns a graph plus its
 * weights into an ONNX model. Shapes are tracked as channels-last (H, W, C), as Keras sees them.
 */

export type Padding = 'valid' | 'same';

export interface Shape {
  h: number;
  w: number;
  c: number;
}

interface Base {
  /** Keras layer name. */
  name: string;
  /** True when Keras would give this layer a generated name (conv2d_7): matched by order, not name. */
  auto: boolean;
  inputs: string[];
  shape: Shape;
}

export type LayerNode =
  | (Base & { op: 'input' })
  | (Base & {
      op: 'conv';
      filters: number;
      kernel: [number, number];
      strides: [number, number];
      padding: Padding;
      useBias: boolean;
    })
  | (Base & {
      op: 'sepconv';
      filters: number;
      kernel: [number, number];
      strides: [number, number];
      padding: Padding;
      useBias: boolean;
    })
  | (Base & { op: 'bn'; epsilon: number; scale: boolean; center: boolean })
  | (Base & { op: 'relu' })
  | (Base & { op: 'zeropad'; pad: [[number, number], [number, number]] })
  | (Base & { op: 'maxpool' | 'avgpool'; pool: [number, number]; strides: [number, number]; padding: Padding })
  | (Base & { op: 'add' })
  | (Base & { op: 'concat' })
  | (Base & { op: 'gap' })
  | (Base & { op: 'dense'; units: number; activation: 'linear' | 'softmax' });

/** A node as the builder methods describe it: the name is optional (generated when absent). */
type NodeInit = LayerNode extends infer T ? (T extends LayerNode ? Omit<T, 'auto' | 'name'> & { name?: string } : never) : never;

export type WeightedOp = 'conv' | 'sepconv' | 'bn' | 'dense';
export const WEIGHTED_OPS: ReadonlySet<string> = new Set<WeightedOp>(['conv', 'sepconv', 'bn', 'dense']);

/** Keras's class-based prefix for generated names, per op. */
export const KERAS_AUTO_PREFIX: Record<WeightedOp, string> = {
  conv: 'conv2d',
  sepconv: 'separable_conv2d',
  bn: 'batch_normalization',
  dense: 'dense',
};

/** TF/Keras output size and padding for one spatial axis. */
export function convAxis(size: number, k: number, s: number, padding: Padding): { out: number; before: number; after: number } {
  if (padding === 'valid') return { out: Math.floor((size - k) / s) + 1, before: 0, after: 0 };
  const out = Math.ceil(size / s);
  const total = Math.max((out - 1) * s + k - size, 0);
  const before = Math.floor(total / 2);
  return { out, before, after: total - before };
}

const pair = (v: number | [number, number]): [number, number] => (typeof v === 'number' ? [v, v] : v);

interface ConvOptions {
  name?: string;
  filters: number;
  kernel: number | [number, number];
  strides?: number | [number, number];
  padding?: Padding;
  useBias?: boolean;
}

export class LayerGraph {
  readonly nodes: LayerNode[] = [];
  private readonly byName = new Map<string, LayerNode>();
  private readonly counters = new Map<string, number>();

  constructor(
    readonly name: string,
    readonly inputSize: number,
    /** First number Keras appends to generated names: 1 in Keras 2.0-2.2 (`conv2d_1`). */
    private readonly autoStart = 1,
  ) {}

  node(name: string): LayerNode {
    const n = this.byName.get(name);
    if (!n) throw new Error(`no layer named ${name} in ${this.name}`);
    return n;
  }

  get output(): LayerNode {
    return this.nodes[this.nodes.length - 1];
  }

  /** Layers that own weights, in creation order. */
  weighted(): LayerNode[] {
    return this.nodes.filter((n) => WEIGHTED_OPS.has(n.op));
  }

  private autoName(prefix: string): string {
    const k = this.counters.get(prefix) ?? this.autoStart;
    this.counters.set(prefix, k + 1);
    return k === 0 ? prefix : `${prefix}_${k}`;
  }

  private add(node: NodeInit, autoPrefix: string): string {
    const auto = node.name === undefined;
    const name = node.name ?? this.autoName(autoPrefix);
    if (this.byName.has(name)) throw new Error(`duplicate layer name ${name} in ${this.name}`);
    const full = { ...node, name, auto } as unknown as LayerNode;
    this.nodes.push(full);
    this.byName.set(name, full);
    return name;
  }

  private shapeOf(name: string): Shape {
    return this.node(name).shape;
  }

  input(name = 'input_1'): string {
    return this.add({ op: 'input', name, inputs: [], shape: { h: this.inputSize, w: this.inputSize, c: 3 } }, 'input');
  }

  /** Output shape and normalised geometry of a sliding window (convolution or pooling) over `x`. */
  private window(x: string, k: number | [number, number], st: number | [number, number] | undefined, p: Padding | undefined, c?: number) {
    const kernel = pair(k);
    const strides = pair(st ?? k);
    const padding = p ?? 'valid';
    const s = this.shapeOf(x);
    const shape = { h: convAxis(s.h, kernel[0], strides[0], padding).out, w: convAxis(s.w, kernel[1], strides[1], padding).out, c: c ?? s.c };
    return { kernel, strides, padding, shape };
  }

  conv(x: string, o: ConvOptions): string {
    const w = this.window(x, o.kernel, o.strides ?? 1, o.padding, o.filters);
    return this.add({ op: 'conv', name: o.name, inputs: [x], filters: o.filters, ...w, useBias: o.useBias ?? true }, 'conv2d');
  }

  /** Keras SeparableConv2D (depth multiplier 1): depthwise then pointwise convolution. */
  sepConv(x: string, o: ConvOptions): string {
    const w = this.window(x, o.kernel, o.strides ?? 1, o.padding, o.filters);
    return this.add({ op: 'sepconv', name: o.name, inputs: [x], filters: o.filters, ...w, useBias: o.useBias ?? false }, 'separable_conv2d');
  }

  bn(x: string, o: { name?: string; epsilon?: number; scale?: boolean; center?: boolean } = {}): string {
    return this.add(
      { op: 'bn', name: o.name, inputs: [x], shape: this.shapeOf(x), epsilon: o.epsilon ?? 1e-3, scale: o.scale ?? true, center: o.center ?? true },
      'batch_normalization',
    );
  }

  relu(x: string, name?: string): string {
    return this.add({ op: 'relu', name, inputs: [x], shape: this.shapeOf(x) }, 'activation');
  }

  zeroPad(x: string, pad: number | [[number, number], [number, number]], name?: string): string {
    const p: [[number, number], [number, number]] = typeof pad === 'number' ? [[pad, pad], [pad, pad]] : pad;
    const s = this.shapeOf(x);
    const shape = { h: s.h + p[0][0] + p[0][1], w: s.w + p[1][0] + p[1][1], c: s.c };
    return this.add({ op: 'zeropad', name, inputs: [x], shape, pad: p }, 'zero_padding2d');
  }

  pool(
    kind: 'maxpool' | 'avgpool',
    x: string,
    o: { name?: string; pool: number | [number, number]; strides?: number | [number, number]; padding?: Padding },
  ): string {
    const { kernel: pool, strides, padding, shape } = this.window(x, o.pool, o.strides, o.padding);
    return this.add({ op: kind, name: o.name, inputs: [x], shape, pool, strides, padding }, kind === 'maxpool' ? 'max_pooling2d' : 'average_pooling2d');
  }

  addLayers(xs: string[], name?: string): string {
    const s = this.shapeOf(xs[0]);
    for (const x of xs) {
      const t = this.shapeOf(x);
      if (t.h !== s.h || t.w !== s.w || t.c !== s.c) throw new Error(`add: shape mismatch ${JSON.stringify(s)} vs ${JSON.stringify(t)}`);
    }
    return this.add({ op: 'add', name, inputs: xs, shape: s }, 'add');
  }

  concat(xs: string[], name?: string): string {
    const s = this.shapeOf(xs[0]);
    let c = 0;
    for (const x of xs) {
      const t = this.shapeOf(x);
      if (t.h !== s.h || t.w !== s.w) throw new Error(`concat: spatial mismatch in ${name}`);
      c += t.c;
    }
    return this.add({ op: 'concat', name, inputs: xs, shape: { h: s.h, w: s.w, c } }, 'concatenate');
  }

  gap(x: string, name?: string): string {
    return this.add({ op: 'gap', name, inputs: [x], shape: { h: 1, w: 1, c: this.shapeOf(x).c } }, 'global_average_pooling2d');
  }

  dense(x: string, o: { name?: string; units: number; activation?: 'linear' | 'softmax' }): string {
    return this.add({ op: 'dense', name: o.name, inputs: [x], shape: { h: 1, w: 1, c: o.units }, units: o.units, activation: o.activation ?? 'linear' }, 'dense');
  }

  /** Multiply-accumulates per image (convolutions and dense layers), for the compute limit. */
  macs(): number {
    let total = 0;
    for (const n of this.nodes) {
      if (n.op === 'conv') {
        const cin = this.shapeOf(n.inputs[0]).c;
        total += n.shape.h * n.shape.w * n.filters * cin * n.kernel[0] * n.kernel[1];
      } else if (n.op === 'sepconv') {
        const cin = this.shapeOf(n.inputs[0]).c;
        total += n.shape.h * n.shape.w * cin * n.kernel[0] * n.kernel[1] + n.shape.h * n.shape.w * cin * n.filters;
      } else if (n.op === 'dense') {
        total += this.shapeOf(n.inputs[0]).c * n.units;
      }
    }
    return total;
  }
}
