/**
 * Reads a TF.js layers-model (`model.json` + binary shards) as a WeightSource: the weights
 * manifest names each tensor `layer/role`; quantized tensors (uint8, uint16, float16) are
 * dequantized the way TF.js does it. Batch-norm epsilons come from the model topology.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ModelError } from '../../errors.ts';
import { weightRole, type FileLayer, type WeightSource } from './types.ts';

interface ManifestEntry {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype: 'uint8' | 'uint16' | 'float16'; scale?: number; min?: number };
}

export interface LayersModelJson {
  modelTopology: unknown;
  weightsManifest: { paths: string[]; weights: ManifestEntry[] }[];
  format?: string;
}

/** Keras layer configs found in a layers-model topology, by layer name. */
export function layerConfigs(topology: unknown): Map<string, { className: string; config: Record<string, unknown> }> {
  const out = new Map<string, { className: string; config: Record<string, unknown> }>();
  const walk = (layers: unknown) => {
    if (!Array.isArray(layers)) return;
    for (const l of layers as { class_name: string; name?: string; config: Record<string, unknown> }[]) {
      const name = (l.name ?? l.config?.name) as string | undefined;
      if (name) out.set(name, { className: l.class_name, config: l.config });
      const inner = l.config?.layers;
      if (inner) walk(inner);
    }
  };
  const t = topology as { model_config?: { config?: { layers?: unknown } }; config?: { layers?: unknown } };
  walk(t?.model_config?.config?.layers ?? t?.config?.layers);
  return out;
}

function float16ToFloat32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** Builds a WeightSource from a parsed model.json and the concatenated shard bytes. */
export function weightsFromLayersModel(json: LayersModelJson, data: Uint8Array, description: string): WeightSource {
  const configs = layerConfigs(json.modelTopology);
  const layers = new Map<string, FileLayer>();
  let offset = 0;
  const entries = json.weightsManifest.flatMap((g) => g.weights);
  for (const e of entries) {
    const n = e.shape.reduce((a, b) => a * b, 1);
    let values: Float32Array;
    const q = e.quantization;
    if (q) {
      values = new Float32Array(n);
      if (q.dtype === 'float16') {
        const dv = new DataView(data.buffer, data.byteOffset + offset, n * 2);
        for (let i = 0; i < n; i++) values[i] = float16ToFloat32(dv.getUint16(i * 2, true));
        offset += n * 2;
      } else {
        const bytes = q.dtype === 'uint8' ? 1 : 2;
        const dv = new DataView(data.buffer, data.byteOffset + offset, n * bytes);
        const scale = q.scale ?? 1;
        const min = q.min ?? 0;
        for (let i = 0; i < n; i++) values[i] = (bytes === 1 ? dv.getUint8(i) : dv.getUint16(i * 2, true)) * scale + min;
        offset += n * bytes;
      }
    } else if (e.dtype === 'float32') {
      if (offset + n * 4 > data.byteLength) throw new ModelError('weights_truncated', `The weight shards end before ${e.name}.`);
      values = new Float32Array(n);
      new Uint8Array(values.buffer).set(data.subarray(offset, offset + n * 4));
      offset += n * 4;
    } else {
      throw new ModelError('weights_dtype', `Weight ${e.name} has dtype ${e.dtype}; only float32 and quantized weights are supported.`);
    }
    if (offset > data.byteLength) throw new ModelError('weights_truncated', `The weight shards end before ${e.name}.`);
    const parts = e.name.split('/');
    const role = weightRole(e.name);
    if (!role || parts.length < 2) continue;
    const layerName = parts[parts.length - 2];
    let layer = layers.get(layerName);
    if (!layer) {
      const cfg = configs.get(layerName)?.config;
      layer = { name: layerName, weights: {}, epsilon: typeof cfg?.epsilon === 'number' ? cfg.epsilon : undefined };
      layers.set(layerName, layer);
    }
    layer.weights[role] = { shape: e.shape, values };
  }
  if (offset !== data.byteLength) {
    throw new ModelError('weights_size', `The weight shards hold ${data.byteLength} bytes but the manifest describes ${offset}.`);
  }
  // Keep Keras's layer order from the topology where possible, else manifest order.
  const order = [...configs.keys()];
  const ordered = [...layers.values()].sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
  const id = createHash('sha256').update(data).digest('hex');
  return { description, format: 'tfjs-layers', id, layers: ordered };
}

/** Reads `model.json` and its shards from a folder (or a path to the model.json). */
export async function readLayersModelFolder(path: string, description?: string): Promise<{ json: LayersModelJson; source: WeightSource }> {
  const jsonPath = path.endsWith('.json') ? path : join(path, 'model.json');
  let json: LayersModelJson;
  try {
    json = JSON.parse(await readFile(jsonPath, 'utf8')) as LayersModelJson;
  } catch (err) {
    throw new ModelError('weights_missing', `Cannot read the TF.js model at ${jsonPath}: ${(err as Error).message}`, { cause: err });
  }
  if (!Array.isArray(json.weightsManifest)) throw new ModelError('weights_format', `${jsonPath} has no weightsManifest: not a TF.js layers model.`);
  const dir = dirname(jsonPath);
  const shards: Buffer[] = [];
  for (const group of json.weightsManifest) {
    for (const p of group.paths) {
      try {
        shards.push(await readFile(join(dir, p)));
      } catch (err) {
        throw new ModelError('weights_missing', `Missing weight shard ${join(dir, p)}.`, { cause: err });
      }
    }
  }
  const data = Buffer.concat(shards);
  return { json, source: weightsFromLayersModel(json, data, description ?? `TF.js layers model ${jsonPath}`) };
}
