/**
 * This machine's own compute peak, as ONNX Runtime reaches it: single large convolutions (a 3x3
 * one and a 1x1 one, which ONNX Runtime runs as a GEMM), in fp32 and int8, built the way our
 * backbones are (the int8 ones through the same QDQ quantizer, so ONNX Runtime fuses them into the
 * same QLinearConv kernels). The benchmark times them interleaved with the backbones, with the
 * same session settings, and divides each backbone's multiply-accumulates by the result.
 */
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { calibrate } from './calibrate.ts';
import { decodeModel, quantizeModel } from './quantize.ts';
import { rng } from '../weights/generate.ts';

const { onnx } = onnxProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;

export interface ProbeSpec {
  name: string;
  channels: number;
  filters: number;
  size: number;
  kernel: number;
}

/** 3x3, 256 → 256 channels at 56x56 (1.85 GMAC); 1x1, 1024 → 1024 at 28x28 (0.82 GMAC). */
export const PEAK_PROBES: ProbeSpec[] = [
  { name: 'conv3x3', channels: 256, filters: 256, size: 56, kernel: 3 },
  { name: 'conv1x1', channels: 1024, filters: 1024, size: 28, kernel: 1 },
];

export function probeMacs(p: ProbeSpec): number {
  return p.size * p.size * p.filters * p.channels * p.kernel * p.kernel;
}

/** Conv (+bias) → Relu → GlobalAveragePool: the Relu lets the int8 version end in a QuantizeLinear. */
export function probeModel(p: ProbeSpec, seed = 7): Uint8Array {
  const r = rng(seed);
  const k = new Float32Array(p.filters * p.channels * p.kernel * p.kernel);
  const std = Math.sqrt(2 / (p.channels * p.kernel * p.kernel));
  for (let i = 0; i < k.length; i++) k[i] = (r() * 2 - 1) * std * Math.sqrt(3);
  const bias = new Float32Array(p.filters).map(() => (r() - 0.5) * 0.1);
  const tensor = (name: string, dims: number[], v: Float32Array) =>
    onnx.TensorProto.create({ name, dims, dataType: FLOAT, rawData: new Uint8Array(v.buffer) });
  const pad = (p.kernel - 1) / 2;
  const vi = (name: string, dims: number[]) =>
    onnx.ValueInfoProto.create({
      name,
      type: onnx.TypeProto.create({
        tensorType: onnx.TypeProto.Tensor.create({ elemType: FLOAT, shape: onnx.TensorShapeProto.create({ dim: dims.map((d) => onnx.TensorShapeProto.Dimension.create({ dimValue: d })) }) }),
      }),
    });
  const ints = (name: string, v: number[]) => onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INTS, ints: v });
  const model = onnx.ModelProto.create({
    irVersion: 7,
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: '', version: 13 })],
    producerName: 'catdog-peak',
    graph: onnx.GraphProto.create({
      name: p.name,
      node: [
        onnx.NodeProto.create({ opType: 'Conv', input: ['input', 'k', 'b'], output: ['conv'], name: 'conv', attribute: [ints('kernel_shape', [p.kernel, p.kernel]), ints('pads', [pad, pad, pad, pad])] }),
        onnx.NodeProto.create({ opType: 'Relu', input: ['conv'], output: ['relu'], name: 'relu' }),
        onnx.NodeProto.create({ opType: 'GlobalAveragePool', input: ['relu'], output: ['y'], name: 'gap' }),
      ],
      initializer: [tensor('k', [p.filters, p.channels, p.kernel, p.kernel], k), tensor('b', [p.filters], bias)],
      input: [vi('input', [1, p.channels, p.size, p.size])],
      output: [vi('y', [1, p.filters, 1, 1])],
    }),
  });
  return onnx.ModelProto.encode(model).finish();
}

export function probeInput(p: ProbeSpec, seed = 11): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: p.channels * p.size * p.size }, () => r());
}

/** The int8 QDQ version of a probe, its activations calibrated (min-max) on its own input. */
export async function probeModelInt8(p: ProbeSpec): Promise<Uint8Array> {
  const fp32 = probeModel(p);
  const x = probeInput(p);
  const { plan, result } = await calibrate(fp32, 1, async () => x, [1, p.channels, p.size, p.size], { method: 'minmax', threads: 1, quantizeInput: true });
  return quantizeModel(decodeModel(fp32), plan, new Map(Object.entries(result.ranges)));
}

export interface Probe {
  spec: ProbeSpec;
  precision: 'fp32' | 'int8';
  session: ort.InferenceSession;
  input: ort.Tensor;
}

export async function loadProbes(options: ort.InferenceSession.SessionOptions): Promise<Probe[]> {
  const out: Probe[] = [];
  for (const spec of PEAK_PROBES) {
    const input = new ort.Tensor('float32', probeInput(spec), [1, spec.channels, spec.size, spec.size]);
    out.push({ spec, precision: 'fp32', session: await ort.InferenceSession.create(probeModel(spec), options), input });
    out.push({ spec, precision: 'int8', session: await ort.InferenceSession.create(await probeModelInt8(spec), options), input });
  }
  for (const p of out) await p.session.run({ input: p.input }); // warm-up
  return out;
}

/** Best GMAC/s of `runs` runs of a probe. */
export async function probeGmacs(p: Probe, runs = 3): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await p.session.run({ input: p.input });
    best = Math.min(best, performance.now() - t);
  }
  return probeMacs(p.spec) / 1e9 / (best / 1000);
}
