/**
 * Backbones on ONNX Runtime: weights → ONNX graph (cached under models/onnx/, rebuilt when the
 * weights or the exporter change) → an InferenceSession.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { DEFAULT_MODELS_DIR } from '../../paths.ts';
import type { BackboneDefinition } from '../backbones/types.ts';
import { bindWeights } from '../weights/bind.ts';
import { readWeights, resolveWeights, type ResolvedWeights } from '../weights/sources.ts';
import { ModelError } from '../../errors.ts';
import { calibrationId, calibrationPath, planFor, readCalibration, roundedKernels, type QuantRecipe } from './calibrate.ts';
import { exportOnnx } from './export.ts';
import { decodeModel, QUANT_VERSION, quantizeModel, type Range } from './quantize.ts';
import type { Precision } from '../types.ts';

/** Bumped whenever the exporter's output changes, so cached graphs are rebuilt. */
export const EXPORT_VERSION = 3; // 2: any input size for backbones with `anySize`; 3: the `maxpooled` output

/** Numeric precision of the backbones (types.ts): fp32 graphs, or int8 QDQ graphs quantized from them. */
export type { Precision };
export const PRECISIONS: readonly Precision[] = ['fp32', 'int8'];

/** Weight bits of int8 graphs: full int8 range (see quantize.ts for the 7-bit option). */
export const INT8_WEIGHT_BITS = 8;

export interface RuntimeOptions {
  /**
   * fp32 or int8 graphs (CATDOG_PRECISION; default int8). int8 runs where the weights have a
   * calibration (models/calibration) and falls back to fp32, with a log line, where they do not.
   */
  precision?: Precision;
  /** Threads per ONNX Runtime session (CATDOG_THREADS; default: the machine's cores, at most 4). */
  threads?: number | null;
  /** Let idle worker threads spin for work (CATDOG_SPIN=1). Off by default: it steals CPU from a job sharing the cores. */
  spin?: boolean;
  /** The memory arena for every backbone (CATDOG_ARENA); default: each backbone's own choice (useArena). */
  arena?: boolean | null;
  /** Where the ONNX graphs (and weights) live (CATDOG_MODELS_DIR). */
  modelsDir?: string;
}

export interface BackboneInfo {
  name: BackboneDefinition['name'];
  title: string;
  weights: string;
  /** Identity of the graph's weights: the fp32 weights' id, or for int8 one that also covers the quantization. */
  weightsId: string;
  precision: Precision;
  /** Why this backbone runs in fp32 though int8 was asked for (no calibration for its weights). */
  fallback?: string;
  generated: boolean;
  hasTop: boolean;
  onnxPath: string;
  /** Time to build the graph (0 when it came from the cache). */
  buildMs: number;
  /** Time to create the ONNX Runtime session. */
  loadMs: number;
}

export interface LoadedBackbone {
  definition: BackboneDefinition;
  session: ort.InferenceSession;
  info: BackboneInfo;
}

export function defaultThreads(): number {
  return Math.max(1, Math.min(4, cpus().length));
}

/**
 * ONNX Runtime's memory arena, per backbone. Measured with `npm run bench` on 2 cores: Xception
 * (depthwise convolutions, many intermediate buffers) runs in 56 ms with the arena and 151 ms
 * without; ResNet50 and InceptionV3 run at the same speed either way, and without it their memory
 * does not grow for good after a batch. CATDOG_ARENA=1 or 0 forces it for all.
 */
export function useArena(backbone?: BackboneDefinition, forced: boolean | null = null): boolean {
  return forced ?? backbone?.arena ?? false;
}

export function sessionOptions(o: RuntimeOptions = {}, backbone?: BackboneDefinition): ort.InferenceSession.SessionOptions {
  const spin = o.spin ?? false;
  return {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: o.threads ?? defaultThreads(),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    enableCpuMemArena: useArena(backbone, o.arena ?? null),
    // Without the arena, a memory pattern is one block per run, and glibc serves a block over its
    // 32 MB mmap ceiling with a fresh mmap each run: every page faults again (measured: Xception
    // batch 1 and InceptionV3 batch 4, 34-42 MB, 8,800-10,900 page faults per run). Per-tensor
    // allocations stay under the ceiling and are reused by malloc.
    enableMemPattern: useArena(backbone, o.arena ?? null),
    extra: { session: { intra_op: { allow_spinning: spin ? '1' : '0' } } },
  };
}

interface Sidecar {
  exportVersion: number;
  weightsId: string;
  description: string;
  hasTop: boolean;
  precision?: Precision;
  /** int8: the quantizer version, the fp32 weights' id and how the activations were calibrated. */
  quantVersion?: number;
  fp32WeightsId?: string;
  calibration?: { method: string; photos: number; tail?: number; file: string; recipe?: QuantRecipe; rounding?: string };
}

/** Builds (or finds in the cache) the ONNX graph for a backbone's weights. */
export async function ensureOnnx(
  definition: BackboneDefinition,
  resolved: ResolvedWeights,
  log?: (line: string) => void,
  modelsDir = DEFAULT_MODELS_DIR,
): Promise<{ path: string; sidecar: Sidecar; buildMs: number }> {
  const dir = join(modelsDir, 'onnx');
  const base = join(dir, `${definition.name}-${resolved.cacheKey}-v${EXPORT_VERSION}`);
  const onnxPath = `${base}.onnx`;
  const sidecarPath = `${base}.json`;
  if (existsSync(onnxPath) && existsSync(sidecarPath)) {
    const sidecar = JSON.parse(await readFile(sidecarPath, 'utf8')) as Sidecar;
    if (sidecar.exportVersion === EXPORT_VERSION) return { path: onnxPath, sidecar, buildMs: 0 };
  }
  const t0 = performance.now();
  const source = await readWeights(definition, resolved, log, modelsDir);
  const bound = bindWeights(definition, source);
  const bytes = exportOnnx(bound);
  await mkdir(dir, { recursive: true });
  // Write then rename, so a killed process never leaves a half-written graph in the cache.
  const tmp = `${onnxPath}.${process.pid}.tmp`;
  await writeFile(tmp, bytes);
  await rename(tmp, onnxPath);
  const sidecar: Sidecar = { exportVersion: EXPORT_VERSION, weightsId: source.id, description: source.description, hasTop: bound.hasTop };
  await writeFile(`${sidecarPath}.${process.pid}.tmp`, JSON.stringify(sidecar, null, 1));
  await rename(`${sidecarPath}.${process.pid}.tmp`, sidecarPath);
  const buildMs = performance.now() - t0;
  log?.(`catdog: built the ${definition.title} ONNX graph from ${source.description} in ${(buildMs / 1000).toFixed(1)} s`);
  return { path: onnxPath, sidecar, buildMs };
}

/**
 * Builds (or finds in the cache) the int8 QDQ graph of a backbone's weights: the fp32 graph,
 * quantized with the activation ranges of models/calibration/<backbone>-<weights key>.json
 * (`npm run calibrate`). Its weights identity is new, so feature caches and heads keep int8 and
 * fp32 features apart.
 */
export async function ensureInt8(
  definition: BackboneDefinition,
  resolved: ResolvedWeights,
  log?: (line: string) => void,
  modelsDir = DEFAULT_MODELS_DIR,
): Promise<{ path: string; sidecar: Sidecar; buildMs: number }> {
  const fp32 = await ensureOnnx(definition, resolved, log, modelsDir);
  const calPath = calibrationPath(definition.name, resolved.cacheKey, modelsDir);
  const cal = await readCalibration(calPath);
  if (!cal || cal.weightsId !== fp32.sidecar.weightsId) {
    throw new ModelError(
      'calibration_missing',
      `int8 ${definition.title} needs activation ranges for these weights (${resolved.label}), and ${calPath} ${cal ? 'belongs to other weights' : 'is missing'}. ` +
        `Run \`npm run calibrate -- --backbones ${definition.name} <training photos: zip or folder>\`, or use CATDOG_PRECISION=fp32.`,
    );
  }
  const calId = calibrationId(cal);
  const weightsId = `int8-${createHash('sha256').update(`${fp32.sidecar.weightsId}\n${QUANT_VERSION}\n${INT8_WEIGHT_BITS}\n${calId}`).digest('hex')}`;
  const base = join(modelsDir, 'onnx', `${definition.name}-${resolved.cacheKey}-v${EXPORT_VERSION}-int8-q${QUANT_VERSION}-${calId.slice(0, 12)}`);
  const onnxPath = `${base}.onnx`;
  const sidecarPath = `${base}.json`;
  if (existsSync(onnxPath) && existsSync(sidecarPath)) {
    const sidecar = JSON.parse(await readFile(sidecarPath, 'utf8')) as Sidecar;
    if (sidecar.weightsId === weightsId) return { path: onnxPath, sidecar, buildMs: 0 };
  }
  const t0 = performance.now();
  const model = decodeModel(await readFile(fp32.path));
  const plan = planFor(model, cal);
  const kernels = await roundedKernels(calPath, cal, model, plan);
  const bytes = quantizeModel(model, plan, new Map<string, Range>(Object.entries(cal.ranges)), { weightBits: INT8_WEIGHT_BITS, ...(kernels ? { kernels } : {}) });
  const tmp = `${onnxPath}.${process.pid}.tmp`;
  await writeFile(tmp, bytes);
  await rename(tmp, onnxPath);
  const sidecar: Sidecar = {
    exportVersion: EXPORT_VERSION,
    weightsId,
    description: `${fp32.sidecar.description}, int8 (${cal.method} calibration on ${cal.photos} photos${cal.rounding ? ', GPTQ rounding' : ''})`,
    hasTop: fp32.sidecar.hasTop,
    precision: 'int8',
    quantVersion: QUANT_VERSION,
    fp32WeightsId: fp32.sidecar.weightsId,
    calibration: { method: cal.method, photos: cal.photos, tail: cal.tail, file: calPath, ...(cal.recipe ? { recipe: cal.recipe } : {}), ...(cal.rounding ? { rounding: cal.rounding.method } : {}) },
  };
  await writeFile(`${sidecarPath}.${process.pid}.tmp`, JSON.stringify(sidecar, null, 1));
  await rename(`${sidecarPath}.${process.pid}.tmp`, sidecarPath);
  const buildMs = performance.now() - t0;
  log?.(`catdog: built the int8 ${definition.title} ONNX graph (${cal.method} calibration, ${cal.photos} photos) in ${(buildMs / 1000).toFixed(1)} s`);
  return { path: onnxPath, sidecar, buildMs };
}

export async function loadBackbone(
  definition: BackboneDefinition,
  spec?: string,
  options: RuntimeOptions & { log?: (line: string) => void } = {},
): Promise<LoadedBackbone> {
  const resolved = resolveWeights(definition, spec, options.modelsDir);
  let precision = options.precision ?? 'int8';
  let fallback: string | undefined;
  let graph: Awaited<ReturnType<typeof ensureOnnx>> | undefined;
  if (precision === 'int8') {
    try {
      graph = await ensureInt8(definition, resolved, options.log, options.modelsDir);
    } catch (e) {
      if (!(e instanceof ModelError && e.code === 'calibration_missing')) throw e;
      precision = 'fp32';
      fallback = `no int8 calibration for ${resolved.label} (npm run calibrate -- --backbones ${definition.name} <training photos>)`;
      options.log?.(`catdog: ${definition.title} runs in fp32: ${fallback}`);
    }
  }
  const { path, sidecar, buildMs } = graph ?? (await ensureOnnx(definition, resolved, options.log, options.modelsDir));
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(path, sessionOptions(options, definition));
  const loadMs = performance.now() - t0;
  return {
    definition,
    session,
    info: {
      name: definition.name,
      title: definition.title,
      weights: resolved.label,
      weightsId: sidecar.weightsId,
      precision,
      ...(fallback ? { fallback } : {}),
      generated: resolved.kind === 'generated',
      hasTop: sidecar.hasTop,
      onnxPath: path,
      buildMs,
      loadMs,
    },
  };
}

/**
 * Runs a backbone on a batch of preprocessed NCHW inputs (concatenated), all `size` px square
 * (default: the backbone's input size; another size only for backbones with `anySize`).
 */
export async function runBackbone(
  b: LoadedBackbone,
  batch: Float32Array,
  n: number,
  size = b.definition.inputSize,
): Promise<{ features: Float32Array; maxpooled: Float32Array; imagenet: Float32Array | null }> {
  const s = size;
  if (s !== b.definition.inputSize && !b.definition.anySize) {
    throw new ModelError('view_size', `${b.definition.title} takes only ${b.definition.inputSize} px inputs, not ${s}.`);
  }
  const input = new ort.Tensor('float32', batch, [n, 3, s, s]);
  const fetches = b.info.hasTop ? ['features', 'maxpooled', 'imagenet'] : ['features', 'maxpooled'];
  const out = await b.session.run({ input }, fetches);
  const features = out.features.data as Float32Array;
  const maxpooled = out.maxpooled.data as Float32Array;
  const imagenet = b.info.hasTop ? (out.imagenet.data as Float32Array) : null;
  input.dispose?.();
  return { features, maxpooled, imagenet };
}
