/**
 * What the model layer is told (src/config.ts reads it from the environment, once, with every
 * other setting; tests and scripts build it with modelSettings()).
 */
import { join } from 'node:path';
import { DEFAULT_MODELS_DIR } from '../paths.ts';
import type { BackboneName } from './types.ts';

export interface ModelSettings {
  /** CATDOG_BACKBONES: the backbones to run, in fused order; null: the head's, else resnet50. */
  backbones: BackboneName[] | null;
  /** CATDOG_WEIGHTS_<BACKBONE>: a weight spec (see weights/sources.ts); absent: the backbone's default. */
  weights: Partial<Record<BackboneName, string>>;
  /** CATDOG_HEAD: a head file instead of the registry's active model. */
  head: string | null;
  /** CATDOG_THREADS: ONNX Runtime threads per session; null: the machine's cores, at most 4. */
  threads: number | null;
  /** CATDOG_SPIN: let idle ONNX Runtime threads spin. */
  spin: boolean;
  /** CATDOG_ARENA: ONNX Runtime's memory arena for all backbones (true/false); null: each backbone's own choice. */
  arena: boolean | null;
  /**
   * CATDOG_PRECISION: int8 (default) or fp32 backbone graphs. int8 runs each backbone whose
   * weights have a calibration (models/calibration) as an int8 graph and the others in fp32.
   */
  precision: 'fp32' | 'int8';
  /** CATDOG_MODELS_DIR: weights, ONNX graphs, the registry. */
  modelsDir: string;
  /** CATDOG_REGISTRY_DIR: the model registry (default: <modelsDir>/registry). */
  registryDir: string;
  /** KERAS_WEIGHTS_BASE_URL: a mirror of Keras's weight bucket; null: Keras's own. */
  kerasWeightsBaseUrl: string | null;
}

/** The settings with nothing configured, or with `overrides`. */
export function modelSettings(overrides: Partial<ModelSettings> = {}): ModelSettings {
  const modelsDir = overrides.modelsDir ?? DEFAULT_MODELS_DIR;
  return {
    backbones: null,
    weights: {},
    head: null,
    threads: null,
    spin: false,
    arena: null,
    precision: 'int8',
    kerasWeightsBaseUrl: null,
    ...overrides,
    modelsDir,
    registryDir: overrides.registryDir ?? join(modelsDir, 'registry'),
  };
}
