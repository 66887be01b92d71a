/**
 * Layer graph + matched weights → ONNX model (opset 13), for onnxruntime-node.
 *
 * - Input `input`: NCHW float32 [N, 3, H, W], already preprocessed (caffe or tf mode).
 * - Output `features`: [N, 2048] globally average-pooled features; `maxpooled`: [N, 2048] the
 *   same map's global maximum (a head may read both: pooling.ts); `imagenet`: [N, 1000] softmax
 *   probabilities when the weights include the ImageNet top (it reads the average, as in Keras).
 * - Batch norm is folded into the convolution before it (kernel scaled, bias adjusted), and a
 *   ZeroPadding2D feeding a convolution becomes that convolution's pads. TF's "same" padding is
 *   written as explicit pads (extra row/column at the end, as TF does).
 * - Keras kernels are HWIO; ONNX wants OIHW. Separable convolutions become a depthwise Conv
 *   (group = channels) and a pointwise 1x1 Conv; the batch norm folds into the pointwise one.
 */
import onnxProto from 'onnx-proto';
import { convAxis, type LayerGraph, type LayerNode } from '../graph.ts';
import type { BoundBackbone, LayerWeights } from '../weights/bind.ts';

const { onnx } = onnxProto;

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;

interface Builder {
  nodes: InstanceType<typeof onnx.NodeProto>[];
  initializers: InstanceType<typeof onnx.TensorProto>[];
}

function floatTensor(name: string, dims: number[], values: Float32Array): InstanceType<typeof onnx.TensorProto> {
  return onnx.TensorProto.create({
    name,
    dims,
    dataType: FLOAT,
    rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
  });
}

function int64Tensor(name: string, values: number[]): InstanceType<typeof onnx.TensorProto> {
  return onnx.TensorProto.create({ name, dims: [values.length], dataType: INT64, int64Data: values });
}

function attrInts(name: string, ints: number[]) {
  return onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INTS, ints });
}
function attrInt(name: string, i: number) {
  return onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INT, i });
}

function node(b: Builder, opType: string, inputs: string[], outputs: string[], name: string, attribute: ReturnType<typeof attrInt>[] = []) {
  b.nodes.push(onnx.NodeProto.create({ opType, input: inputs, output: outputs, name, attribute }));
}

/** HWIO → OIHW. */
function hwioToOihw(k: Float32Array, [kh, kw, ci, co]: number[]): Float32Array {
  const out = new Float32Array(k.length);
  for (let h = 0; h < kh; h++)
    for (let w = 0; w < kw; w++)
      for (let i = 0; i < ci; i++) {
        const src = ((h * kw + w) * ci + i) * co;
        for (let o = 0; o < co; o++) out[((o * ci + i) * kh + h) * kw + w] = k[src + o];
      }
  return out;
}

/** Per-channel scale and shift of an inference-mode batch norm: y = x * scale + shift. */
export function batchNormAffine(w: LayerWeights, epsilon: number, channels: number): { scale: Float32Array; shift: Float32Array } {
  const scale = new Float32Array(channels);
  const shift = new Float32Array(channels);
  const mean = w.moving_mean!.values;
  const variance = w.moving_variance!.values;
  for (let c = 0; c < channels; c++) {
    // Computed in double precision, as the fold should not add float32 rounding of its own.
    const s = (w.gamma ? w.gamma.values[c] : 1) / Math.sqrt(variance[c] + epsilon);
    scale[c] = s;
    shift[c] = (w.beta ? w.beta.values[c] : 0) - mean[c] * s;
  }
  return { scale, shift };
}

function consumers(graph: LayerGraph): Map<string, LayerNode[]> {
  const m = new Map<string, LayerNode[]>();
  for (const n of graph.nodes) for (const i of n.inputs) m.set(i, [...(m.get(i) ?? []), n]);
  return m;
}

export interface ExportOptions {
  /** Producer metadata written into the model. */
  docString?: string;
}

export function exportOnnx(bound: BoundBackbone, options: ExportOptions = {}): Uint8Array {
  const { graph, weights } = bound;
  const b: Builder = { nodes: [], initializers: [] };
  const users = consumers(graph);
  /** ONNX tensor name holding each Keras layer's output. */
  const out = new Map<string, string>();
  /** Pads from a ZeroPadding2D folded into the next conv: [top, left, bottom, right]. */
  const pendingPad = new Map<string, [number, number, number, number]>();
  const folded = new Set<string>();
  const bnOf = (n: LayerNode): (LayerNode & { op: 'bn' }) | null => {
    const u = users.get(n.name) ?? [];
    return u.length === 1 && u[0].op === 'bn' ? (u[0] as LayerNode & { op: 'bn' }) : null;
  };
  const input = (n: LayerNode, i = 0) => {
    const name = out.get(n.inputs[i]);
    if (!name) throw new Error(`internal: ${n.inputs[i]} has no ONNX output before ${n.name}`);
    return name;
  };
  const samePads = (n: LayerNode & { kernel?: [number, number]; pool?: [number, number]; strides: [number, number]; padding: string }) => {
    const src = graph.node(n.inputs[0]).shape;
    const k = n.kernel ?? n.pool!;
    const h = convAxis(src.h, k[0], n.strides[0], n.padding as 'same' | 'valid');
    const w = convAxis(src.w, k[1], n.strides[1], n.padding as 'same' | 'valid');
    return [h.before, w.before, h.after, w.after];
  };

  for (const n of graph.nodes) {
    if (folded.has(n.name)) continue;
    switch (n.op) {
      case 'input':
        out.set(n.name, 'input');
        break;
      case 'zeropad': {
        const u = users.get(n.name) ?? [];
        const pads: [number, number, number, number] = [n.pad[0][0], n.pad[1][0], n.pad[0][1], n.pad[1][1]];
        if (u.length === 1 && u[0].op === 'conv') {
          pendingPad.set(u[0].name, pads);
          out.set(n.name, input(n));
        } else {
          const padsName = `${n.name}/pads`;
          b.initializers.push(int64Tensor(padsName, [0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]]));
          node(b, 'Pad', [input(n), padsName], [n.name], n.name);
          out.set(n.name, n.name);
        }
        break;
      }
      case 'conv':
      case 'sepconv': {
        const cin = graph.node(n.inputs[0]).shape.c;
        const w = weights.get(n.name)!;
        let pads = samePads(n);
        const extra = pendingPad.get(n.name);
        if (extra) pads = pads.map((p, i) => p + extra[i]);
        const bn = bnOf(n);
        const co = n.filters;
        const kernelHwio = n.op === 'conv' ? w.kernel! : w.pointwise_kernel!;
        const bias = new Float32Array(co);
        if (w.bias) bias.set(w.bias.values);
        const kernel = hwioToOihw(kernelHwio.values, kernelHwio.shape);
        if (bn) {
          const { scale, shift } = batchNormAffine(weights.get(bn.name)!, bn.epsilon, co);
          const per = kernel.length / co;
          for (let o = 0; o < co; o++) {
            for (let j = 0; j < per; j++) kernel[o * per + j] *= scale[o];
            bias[o] = bias[o] * scale[o] + shift[o];
          }
          folded.add(bn.name);
        }
        const resultName = bn ? bn.name : n.name;
        let x = input(n);
        if (n.op === 'sepconv') {
          const dw = w.depthwise_kernel!;
          const dwName = `${n.name}/depthwise_kernel`;
          b.initializers.push(floatTensor(dwName, [cin, 1, n.kernel[0], n.kernel[1]], hwioToOihw(dw.values, [dw.shape[0], dw.shape[1], 1, cin])));
          node(b, 'Conv', [x, dwName], [`${n.name}/depthwise`], `${n.name}/depthwise`, [
            attrInts('kernel_shape', n.kernel),
            attrInts('strides', n.strides),
            attrInts('pads', pads),
            attrInt('group', cin),
          ]);
          x = `${n.name}/depthwise`;
          pads = [0, 0, 0, 0];
        }
        const kName = `${n.name}/kernel`;
        const bName = `${n.name}/bias`;
        const kShape = n.op === 'conv' ? [co, cin, n.kernel[0], n.kernel[1]] : [co, cin, 1, 1];
        b.initializers.push(floatTensor(kName, kShape, kernel));
        const hasBias = Boolean(bn || w.bias);
        if (hasBias) b.initializers.push(floatTensor(bName, [co], bias));
        node(b, 'Conv', hasBias ? [x, kName, bName] : [x, kName], [resultName], n.name, [
          attrInts('kernel_shape', n.op === 'conv' ? n.kernel : [1, 1]),
          attrInts('strides', n.op === 'conv' ? n.strides : [1, 1]),
          attrInts('pads', pads),
        ]);
        out.set(n.name, resultName);
        if (bn) out.set(bn.name, resultName);
        break;
      }
      case 'bn': {
        // A batch norm that does not follow a convolution: an explicit scale and shift.
        const { scale, shift } = batchNormAffine(weights.get(n.name)!, n.epsilon, n.shape.c);
        b.initializers.push(floatTensor(`${n.name}/scale`, [n.shape.c, 1, 1], scale));
        b.initializers.push(floatTensor(`${n.name}/shift`, [n.shape.c, 1, 1], shift));
        node(b, 'Mul', [input(n), `${n.name}/scale`], [`${n.name}/mul`], `${n.name}/mul`);
        node(b, 'Add', [`${n.name}/mul`, `${n.name}/shift`], [n.name], n.name);
        out.set(n.name, n.name);
        break;
      }
      case 'relu':
        node(b, 'Relu', [input(n)], [n.name], n.name);
        out.set(n.name, n.name);
        break;
      case 'maxpool':
      case 'avgpool': {
        const attrs = [attrInts('kernel_shape', n.pool), attrInts('strides', n.strides), attrInts('pads', samePads(n))];
        // Keras/TF average pooling with "same" padding divides by the number of real pixels.
        if (n.op === 'avgpool') attrs.push(attrInt('count_include_pad', 0));
        node(b, n.op === 'maxpool' ? 'MaxPool' : 'AveragePool', [input(n)], [n.name], n.name, attrs);
        out.set(n.name, n.name);
        break;
      }
      case 'add':
        if (n.inputs.length !== 2) throw new Error(`add with ${n.inputs.length} inputs is not supported`);
        node(b, 'Add', [input(n, 0), input(n, 1)], [n.name], n.name);
        out.set(n.name, n.name);
        break;
      case 'concat':
        node(b, 'Concat', n.inputs.map((_, i) => input(n, i)), [n.name], n.name, [attrInt('axis', 1)]);
        out.set(n.name, n.name);
        break;
      case 'gap': {
        node(b, 'GlobalAveragePool', [input(n)], [`${n.name}/pooled`], `${n.name}/pooled`);
        b.initializers.push(int64Tensor(`${n.name}/shape`, [0, -1]));
        node(b, 'Reshape', [`${n.name}/pooled`, `${n.name}/shape`], ['features'], n.name);
        node(b, 'GlobalMaxPool', [input(n)], [`${n.name}/max`], `${n.name}/max`);
        node(b, 'Reshape', [`${n.name}/max`, `${n.name}/shape`], ['maxpooled'], `${n.name}/max_reshape`);
        out.set(n.name, 'features');
        break;
      }
      case 'dense': {
        const w = weights.get(n.name)!;
        b.initializers.push(floatTensor(`${n.name}/kernel`, w.kernel!.shape, w.kernel!.values));
        b.initializers.push(floatTensor(`${n.name}/bias`, w.bias!.shape, w.bias!.values));
        const logits = n.activation === 'softmax' ? `${n.name}/logits` : 'imagenet';
        node(b, 'Gemm', [input(n), `${n.name}/kernel`, `${n.name}/bias`], [logits], n.name);
        if (n.activation === 'softmax') node(b, 'Softmax', [logits], ['imagenet'], `${n.name}/softmax`, [attrInt('axis', 1)]);
        out.set(n.name, 'imagenet');
        break;
      }
    }
  }

  const valueInfo = (name: string, dims: (number | string)[]) =>
    onnx.ValueInfoProto.create({
      name,
      type: onnx.TypeProto.create({
        tensorType: onnx.TypeProto.Tensor.create({
          elemType: FLOAT,
          shape: onnx.TensorShapeProto.create({
            dim: dims.map((d) => onnx.TensorShapeProto.Dimension.create(typeof d === 'number' ? { dimValue: d } : { dimParam: d })),
          }),
        }),
      }),
    });
  const size = graph.inputSize;
  const pooled = graph.nodes.find((n) => n.op === 'gap')!;
  const outputs = [valueInfo('features', ['N', pooled.shape.c]), valueInfo('maxpooled', ['N', pooled.shape.c])];
  if (bound.hasTop) outputs.push(valueInfo('imagenet', ['N', graph.output.shape.c]));
  const model = onnx.ModelProto.create({
    irVersion: 7,
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: '', version: 13 })],
    producerName: 'catdog',
    producerVersion: '1',
    docString: options.docString ?? `${bound.definition.title} from ${bound.source.description}`,
    graph: onnx.GraphProto.create({
      name: graph.name,
      node: b.nodes,
      initializer: b.initializers,
      input: [valueInfo('input', bound.definition.anySize ? ['N', 3, 'H', 'W'] : ['N', 3, size, size])],
      output: outputs,
    }),
    metadataProps: [
      onnx.StringStringEntryProto.create({ key: 'backbone', value: bound.definition.name }),
      onnx.StringStringEntryProto.create({ key: 'weights_id', value: bound.source.id }),
      onnx.StringStringEntryProto.create({ key: 'preprocess', value: bound.definition.preprocess }),
    ],
  });
  return onnx.ModelProto.encode(model).finish();
}
