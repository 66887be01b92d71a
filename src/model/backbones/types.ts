import type { LayerGraph } from '../graph.ts';
import type { PreprocessMode } from '../../vision/preprocess.ts';
import type { BackboneName } from '../types.ts';

/** Where Keras keeps its official application weights. */
export const KERAS_APPLICATIONS_URL = 'https://storage.googleapis.com/tensorflow/keras-applications';

export interface KerasWeightsEntry {
  /** Canonical download URL (Keras 3 and tf.keras 2.x use the same one). */
  url: string;
  /** MD5 Keras checks the file against (`file_hash=`). */
  md5: string;
  /** File name, as saved under models/weights/. */
  file: string;
}

/** Keras's `<folder>/<model>_weights_tf_dim_ordering_tf_kernels_notop.h5` with the md5 Keras checks. */
export function kerasNotopWeights(folder: string, model: string, md5: string): KerasWeightsEntry {
  const file = `${model}_weights_tf_dim_ordering_tf_kernels_notop.h5`;
  return { url: `${KERAS_APPLICATIONS_URL}/${folder}/${file}`, md5, file };
}

/**
 * What the rest of the model needs to know about one backbone architecture: everything about it
 * lives here (one file per architecture, listed in BACKBONES), and the rest reads it from there.
 */
export interface BackboneDefinition {
  name: BackboneName;
  /** Human name, e.g. "ResNet50". */
  title: string;
  inputSize: number;
  /**
   * True when every padding in the graph is the same at any input size (ResNet50: 'same' only on
   * stride-1 3x3 convolutions, explicit zero padding elsewhere), so the exported graph takes any
   * H x W and global average pooling gives 2048 features at 224, 288 or 320 px alike.
   */
  anySize?: boolean;
  /** Keras `preprocess_input` mode of this architecture. */
  preprocess: PreprocessMode;
  /** Pooled feature size (the width of this backbone's part of the fused vector). */
  features: number;
  /** Keras's official no-top ImageNet weights (`npm run weights`; the `keras` weight spec). */
  kerasWeights: KerasWeightsEntry;
  /** The weight spec used when CATDOG_WEIGHTS_<NAME> is not set (see weights/sources.ts). */
  defaultWeights: string;
  /**
   * ONNX Runtime's memory arena for this architecture (CATDOG_ARENA overrides it for all).
   * Measured with `npm run bench` on 2 cores: Xception runs in 56 ms with it and 151 ms without;
   * ResNet50 and InceptionV3 run at the same speed either way and keep less memory without it.
   */
  arena: boolean;
  /** Builds the no-top graph with global average pooling (plus the ImageNet top when `top`). */
  build(options?: { epsilon?: number; top?: boolean }): LayerGraph;
  /** Other names a weight file may use for a layer of ours (e.g. Keras 2.2 ResNet names). */
  aliases?(name: string): string[];
  /**
   * The batch-norm epsilon to use when the weight file does not say (an `.h5` has no config),
   * given the layer names in the file. Architectures with a single epsilon leave it out.
   */
  defaultEpsilon?(fileLayerNames: ReadonlySet<string>): number;
}
