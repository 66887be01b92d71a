/**
 * fp32 ONNX graph (from our exporter) → int8 QDQ graph that ONNX Runtime fuses into integer
 * kernels (QLinearConv, QLinearAdd, QLinearConcat, QLinearAveragePool, uint8 MaxPool).
 *
 * - Weights: per output channel, symmetric int8 (zero point 0), `weightBits` 8 (range ±127) or
 *   7 (±63: no int16 saturation in VPMADDUBSW on x86 CPUs without VNNI). Biases: int32 with scale
 *   input scale x weight scale, as ONNX Runtime's QLinearConv expects.
 * - Kept in fp32 as well: the stem convolution (it reads the fp32 input), average pooling and the
 *   convolutions reading it (InceptionV3's pool branches).
 * - Activations: uint8, asymmetric (zero exactly representable), one scale per tensor, from
 *   calibration ranges (see calibrate.ts). A Relu that is the only consumer of a Conv or Add is
 *   folded into the QuantizeLinear after it (zero point 0 clamps negatives, exactly as Relu does).
 *   MaxPool and Pad outputs reuse their input's parameters, so ONNX Runtime runs them on uint8.
 * - Kept in fp32: the global average pooling, the features output and the ImageNet top (Gemm,
 *   Softmax): 2 M of 3.9 G multiply-accumulates in ResNet50, and the features stay exact float.
 * - Per weights, a calibration file may add a recipe (calibrate.ts, QuantRecipe): tensors kept in
 *   fp32 (ResNet50: the stem's output) and an fp32 residual path (measured slower; not shipped).
 * - Every consumer of a quantized tensor gets its own DequantizeLinear (ONNX Runtime's QDQ
 *   selectors want one consumer per DQ node).
 */
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
type ModelProto = InstanceType<typeof onnx.ModelProto>;
type NodeProto = onnxProto.onnx.INodeProto;
type TensorProto = onnxProto.onnx.ITensorProto;

const DT = onnx.TensorProto.DataType;

/** Bumped whenever the quantizer's output changes, so cached int8 graphs are rebuilt. */
export const QUANT_VERSION = 3;

/**
 * Op types whose output is quantized with its own calibrated range. AveragePool is not: ONNX
 * Runtime's QLinearAveragePool took half of int8 InceptionV3's time (`npm run bench -- --profile`),
 * so the pool runs in fp32 and the 1x1 convolution after it (4.6% of InceptionV3's MACs) too.
 */
const OWN_RANGE = new Set(['Conv', 'Add', 'Relu', 'Concat']);
/** Op types whose output takes its (quantized) input's parameters. */
const SAME_AS_INPUT = new Set(['MaxPool', 'Pad']);

export interface QuantPlan {
  /** Tensors that get QuantizeLinear → DequantizeLinear, in graph order. */
  quantized: string[];
  /** Of those, the ones whose range is calibrated (the others copy their source's). */
  calibrated: string[];
  /** Tensor → the tensor whose parameters it reuses (MaxPool, Pad outputs). */
  sameAs: Map<string, string>;
  /** Relu nodes folded into the quantization of their producer's output: relu output → producer output. */
  foldedRelu: Map<string, string>;
  /**
   * fp32 residual path: Adds run in fp32 and read the fp32 value of every input not produced by
   * a Conv (the identity shortcut), the Relu after an Add stays an fp32 op, and only the
   * convolutions reading its output see it quantized.
   */
  floatResidual?: boolean;
}

export interface PlanOptions {
  /** Quantize the graph input too (the peak probes: their one convolution must read int8). */
  quantizeInput?: boolean;
  /** See QuantPlan.floatResidual. */
  floatResidual?: boolean;
}

export interface Range {
  min: number;
  max: number;
}

export interface QParams {
  scale: number;
  zeroPoint: number;
}

export function decodeModel(bytes: Uint8Array): ModelProto {
  return onnx.ModelProto.decode(bytes);
}

function consumersOf(nodes: NodeProto[]): Map<string, NodeProto[]> {
  const m = new Map<string, NodeProto[]>();
  for (const n of nodes) for (const i of n.input ?? []) m.set(i, [...(m.get(i) ?? []), n]);
  return m;
}

/**
 * Which tensors of an fp32 graph get quantized (and which need a calibrated range). Tensors in
 * `keepFloat` stay fp32: the Convs that read only fp32 tensors then stay fp32 Convs.
 */
export function planQuantization(model: ModelProto, keepFloat: ReadonlySet<string> = new Set(), options: boolean | PlanOptions = false): QuantPlan {
  const { quantizeInput = false, floatResidual = false } = typeof options === 'boolean' ? { quantizeInput: options } : options;
  const g = model.graph!;
  const nodes = g.node ?? [];
  const users = consumersOf(nodes);
  const outputs = new Set((g.output ?? []).map((o) => o.name!));
  const quantized: string[] = [];
  const calibrated: string[] = [];
  const sameAs = new Map<string, string>();
  const foldedRelu = new Map<string, string>();
  const isQ = new Set<string>();
  // The graph input stays fp32, so the stem convolution (3 input channels: 0.2-3% of the MACs)
  // runs in fp32: as QLinearConv, ResNet50's 7x7 stem took 12% of the int8 time for 3% of the
  // MACs, and the input's quantization was one rounding more at the very start.
  const inputName = g.input![0].name!;
  if (keepFloat.has(inputName) === false && quantizeInput) {
    quantized.push(inputName);
    calibrated.push(inputName);
    isQ.add(inputName);
  }
  for (const n of nodes) {
    const op = n.opType!;
    const out = n.output![0];
    if (outputs.has(out) || keepFloat.has(out)) continue;
    if (op === 'Relu') {
      const src = n.input![0];
      const producer = nodes.find((p) => p.output?.[0] === src);
      // With an fp32 residual path an Add reads the Relu's fp32 output, so that Relu must stay an op.
      const readByAdd = floatResidual && (users.get(out) ?? []).some((u) => u.opType === 'Add');
      const folds = producer && !readByAdd && (producer.opType === 'Conv' || (producer.opType === 'Add' && !floatResidual));
      if (folds && (users.get(src) ?? []).length === 1) foldedRelu.set(out, src);
    }
    if (op === 'Add' && floatResidual) continue; // an fp32 Add, its Relu quantizes
    if (OWN_RANGE.has(op)) {
      // A Conv/Add output consumed only by a folded Relu is quantized as the Relu's output instead.
      const u = users.get(out) ?? [];
      if ((op === 'Conv' || op === 'Add') && u.length === 1 && u[0].opType === 'Relu' && !outputs.has(u[0].output![0])) continue;
      quantized.push(out);
      calibrated.push(out);
      isQ.add(out);
    } else if (SAME_AS_INPUT.has(op) && isQ.has(n.input![0])) {
      quantized.push(out);
      sameAs.set(out, n.input![0]);
      isQ.add(out);
    }
  }
  return { quantized, calibrated, sameAs, foldedRelu, ...(floatResidual ? { floatResidual } : {}) };
}

/**
 * The calibrated tensors on the residual path: the inputs of every Add (a shortcut convolution's
 * output, the last convolution of a block, the identity) and every Add's output (or the Relu
 * folded into it). One photo's large values there clip in every later block.
 */
export function residualTensors(model: ModelProto, plan: QuantPlan): Set<string> {
  const nodes = model.graph!.node ?? [];
  const adds = nodes.filter((n) => n.opType === 'Add');
  const around = new Set<string>();
  for (const a of adds) {
    for (const i of a.input ?? []) around.add(i);
    around.add(a.output![0]);
  }
  const out = new Set<string>();
  for (const t of plan.calibrated) if (around.has(t) || (plan.foldedRelu.has(t) && around.has(plan.foldedRelu.get(t)!))) out.add(t);
  return out;
}

/** uint8 asymmetric parameters for a range (widened to hold 0, so zero padding is exact). */
export function activationParams(r: Range): QParams {
  const lo = Math.min(0, r.min);
  const hi = Math.max(0, r.max);
  const scale = hi > lo ? (hi - lo) / 255 : 1;
  const zeroPoint = Math.min(255, Math.max(0, Math.round(-lo / scale)));
  return { scale, zeroPoint };
}

/** An initializer's float values (raw data or float_data). */
export function floatValues(t: TensorProto): Float32Array {
  if (t.dataType !== DT.FLOAT) throw new Error(`initializer ${t.name} is not float`);
  if (t.rawData?.length) {
    const copy = new Uint8Array(t.rawData); // aligned copy
    return new Float32Array(copy.buffer, 0, copy.byteLength / 4);
  }
  return Float32Array.from(t.floatData ?? []);
}

function scalarFloat(name: string, v: number): TensorProto {
  return onnx.TensorProto.create({ name, dims: [], dataType: DT.FLOAT, floatData: [v] });
}
function scalarUint8(name: string, v: number): TensorProto {
  return onnx.TensorProto.create({ name, dims: [], dataType: DT.UINT8, rawData: Uint8Array.of(v) });
}
function floatVector(name: string, v: Float32Array): TensorProto {
  return onnx.TensorProto.create({ name, dims: [v.length], dataType: DT.FLOAT, rawData: new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength)) });
}

export interface QuantizeOptions {
  /** 8: weights in ±127; 7: ±63 (no saturation on x86 without VNNI). */
  weightBits?: 7 | 8;
  /**
   * Int8 kernels by kernel name, in place of round-to-nearest's (GPTQ's, see gptq.ts): the same
   * per-channel scales, other integers.
   */
  kernels?: Map<string, Int8Array>;
}

/** Per output channel symmetric quantization of an OIHW kernel. */
export function quantizeKernel(kernel: Float32Array, outChannels: number, bits: 7 | 8): { q: Int8Array; scales: Float32Array } {
  const qmax = bits === 8 ? 127 : 63;
  const per = kernel.length / outChannels;
  const q = new Int8Array(kernel.length);
  const scales = new Float32Array(outChannels);
  for (let o = 0; o < outChannels; o++) {
    let m = 0;
    for (let j = 0; j < per; j++) m = Math.max(m, Math.abs(kernel[o * per + j]));
    const s = m > 0 ? m / qmax : 1;
    scales[o] = s;
    for (let j = 0; j < per; j++) q[o * per + j] = Math.max(-qmax, Math.min(qmax, Math.round(kernel[o * per + j] / s)));
  }
  return { q, scales };
}

/**
 * Rewrites an fp32 model as QDQ, given a range for every tensor in `plan.calibrated`.
 * Returns the encoded model.
 */
export function quantizeModel(model: ModelProto, plan: QuantPlan, ranges: Map<string, Range>, o: QuantizeOptions = {}): Uint8Array {
  const bits = o.weightBits ?? 8;
  const g = model.graph!;
  const inits = new Map((g.initializer ?? []).map((t) => [t.name!, t]));
  const params = new Map<string, QParams>();
  for (const t of plan.quantized) {
    const src = plan.sameAs.get(t);
    if (src) {
      params.set(t, params.get(src)!);
      continue;
    }
    // A folded Relu's tensor: the range is the Relu output's, which is >= 0, so the zero point is 0.
    const r = ranges.get(t);
    if (!r) throw new Error(`no calibration range for ${t}`);
    params.set(t, activationParams(r));
  }
  const newInits: TensorProto[] = [];
  const usedInits = new Set<string>();
  const nodes: NodeProto[] = [];
  const qnames = new Set(plan.quantized);
  // The folded Relu's producer writes the Relu's output name directly.
  const rename = new Map<string, string>();
  for (const [reluOut, src] of plan.foldedRelu) rename.set(src, reluOut);
  const qp = (t: string) => {
    const p = params.get(t)!;
    const s = `${t}/q_scale`;
    const z = `${t}/q_zero`;
    if (!usedInits.has(s)) {
      newInits.push(scalarFloat(s, p.scale), scalarUint8(z, p.zeroPoint));
      usedInits.add(s);
    }
    return [s, z];
  };
  let dqCount = 0;
  const dq = (t: string): string => {
    const [s, z] = qp(t);
    const name = `${t}/dq${dqCount++}`;
    nodes.push(onnx.NodeProto.create({ opType: 'DequantizeLinear', input: [`${t}/q`, s, z], output: [name], name }));
    return name;
  };
  const quantizeOut = (t: string) => {
    const [s, z] = qp(t);
    nodes.push(onnx.NodeProto.create({ opType: 'QuantizeLinear', input: [t, s, z], output: [`${t}/q`], name: `${t}/quantize` }));
  };
  const inputName = g.input![0].name!;
  if (qnames.has(inputName)) quantizeOut(inputName);
  const producerOp = new Map<string, string>();
  for (const n of g.node ?? []) for (const t of n.output ?? []) producerOp.set(t, n.opType!);

  for (const n of g.node ?? []) {
    if (n.opType === 'Relu' && plan.foldedRelu.has(n.output![0])) continue; // done by the Q after the producer
    const rawForAdd = (i: string) => plan.floatResidual === true && n.opType === 'Add' && producerOp.get(i) !== 'Conv';
    const inputs = (n.input ?? []).map((i) => (qnames.has(i) && !rawForAdd(i) ? dq(i) : i));
    const outputs = (n.output ?? []).map((t) => rename.get(t) ?? t);
    if (n.opType === 'Conv' && qnames.has(n.input![0])) {
      const kName = n.input![1];
      const k = inits.get(kName)!;
      const dims = k.dims!.map(Number);
      const rtn = quantizeKernel(floatValues(k), dims[0], bits);
      const { scales } = rtn;
      const q = o.kernels?.get(kName) ?? rtn.q;
      if (q.length !== rtn.q.length) throw new Error(`int8 kernel ${kName}: ${q.length} weights, the graph's ${rtn.q.length}`);
      const qk = `${kName}/int8`;
      newInits.push(
        onnx.TensorProto.create({ name: qk, dims, dataType: DT.INT8, rawData: new Uint8Array(q.buffer, q.byteOffset, q.byteLength) }),
        floatVector(`${qk}/scale`, scales),
        onnx.TensorProto.create({ name: `${qk}/zero`, dims: [dims[0]], dataType: DT.INT8, rawData: new Uint8Array(dims[0]) }),
      );
      usedInits.add(kName);
      const kdq = `${kName}/dq`;
      nodes.push(onnx.NodeProto.create({ opType: 'DequantizeLinear', input: [qk, `${qk}/scale`, `${qk}/zero`], output: [kdq], name: kdq, attribute: [axis0()] }));
      inputs[1] = kdq;
      if (n.input!.length > 2) {
        const bName = n.input![2];
        const bias = floatValues(inits.get(bName)!);
        const inScale = params.get(n.input![0])?.scale;
        if (inScale === undefined) throw new Error(`Conv ${n.name}: its input ${n.input![0]} is not quantized`);
        const bScales = scales.map((s) => s * inScale);
        const qb = new Int32Array(bias.length);
        for (let c = 0; c < bias.length; c++) qb[c] = Math.round(bias[c] / bScales[c]);
        const bq = `${bName}/int32`;
        newInits.push(
          onnx.TensorProto.create({ name: bq, dims: [bias.length], dataType: DT.INT32, rawData: new Uint8Array(qb.buffer) }),
          floatVector(`${bq}/scale`, bScales),
          onnx.TensorProto.create({ name: `${bq}/zero`, dims: [bias.length], dataType: DT.INT32, rawData: new Uint8Array(bias.length * 4) }),
        );
        usedInits.add(bName);
        nodes.push(onnx.NodeProto.create({ opType: 'DequantizeLinear', input: [bq, `${bq}/scale`, `${bq}/zero`], output: [`${bName}/dq`], name: `${bName}/dq`, attribute: [axis0()] }));
        inputs[2] = `${bName}/dq`;
      }
    }
    nodes.push(onnx.NodeProto.create({ ...n, input: inputs, output: outputs }));
    for (const t of outputs) if (qnames.has(t)) quantizeOut(t);
  }
  const initializer = [...(g.initializer ?? []).filter((t) => !usedInits.has(t.name!)), ...newInits];
  const out = onnx.ModelProto.create({
    ...model,
    graph: onnx.GraphProto.create({ ...g, node: nodes, initializer }),
  });
  return onnx.ModelProto.encode(out).finish();
}

function axis0() {
  return onnx.AttributeProto.create({ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 });
}


/** The model with extra graph outputs (float tensors by default), so ONNX Runtime returns them: the tensors to calibrate, a map to study. */
export function withOutputs(model: ModelProto, names: string[], elemType: number = DT.FLOAT): Uint8Array {
  const g = model.graph!;
  const have = new Set((g.output ?? []).map((o) => o.name!));
  const extra = names
    .filter((n) => !have.has(n))
    .map((name) =>
      onnx.ValueInfoProto.create({ name, type: onnx.TypeProto.create({ tensorType: onnx.TypeProto.Tensor.create({ elemType }) }) }),
    );
  return onnx.ModelProto.encode(onnx.ModelProto.create({ ...model, graph: onnx.GraphProto.create({ ...g, output: [...(g.output ?? []), ...extra] }) })).finish();
}
