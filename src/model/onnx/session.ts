/**
 * Backbones on ONNX Runtime: weights → ONNX graph (cached under models/onnx/, rebuilt when the
 * weights or the exporter change) → an InferenceSession.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { DEFAULT_MODELS_DIR } from '../../paths.ts';
import type { BackboneDefinition } from '../backbones/types.ts';
import { bindWeights } from '../weights/bind.ts';
import { readWeights, resolveWeights, type ResolvedWeights } from '../weights/sources.ts';
import { exportOnnx } from './export.ts';
import { ModelError } from '../../errors.ts';

/** Bumped whenever the exporter's output changes, so cached graphs are rebuilt. */
export const EXPORT_VERSION = 2; // 2: any input size for backbones with `anySize`

export interface RuntimeOptions {
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
  weightsId: string;
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
    extra: { session: { intra_op: { allow_spinning: spin ? '1' : '0' } } },
  };
}

interface Sidecar {
  exportVersion: number;
  weightsId: string;
  description: string;
  hasTop: boolean;
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

export async function loadBackbone(
  definition: BackboneDefinition,
  spec?: string,
  options: RuntimeOptions & { log?: (line: string) => void } = {},
): Promise<LoadedBackbone> {
  const resolved = resolveWeights(definition, spec, options.modelsDir);
  const { path, sidecar, buildMs } = await ensureOnnx(definition, resolved, options.log, options.modelsDir);
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
): Promise<{ features: Float32Array; imagenet: Float32Array | null }> {
  const s = size;
  if (s !== b.definition.inputSize && !b.definition.anySize) {
    throw new ModelError('view_size', `${b.definition.title} takes only ${b.definition.inputSize} px inputs, not ${s}.`);
  }
  const input = new ort.Tensor('float32', batch, [n, 3, s, s]);
  const fetches = b.info.hasTop ? ['features', 'imagenet'] : ['features'];
  const out = await b.session.run({ input }, fetches);
  const features = out.features.data as Float32Array;
  const imagenet = b.info.hasTop ? (out.imagenet.data as Float32Array) : null;
  input.dispose?.();
  return { features, imagenet };
}
