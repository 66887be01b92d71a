import type { LayerGraph } from '../graph.ts';
import type { PreprocessMode } from '../../vision/preprocess.ts';
import type { BackboneName } from '../types.ts';

/** What the rest of the model needs to know about one backbone architecture. */
export interface BackboneDefinition {
  name: BackboneName;
  /** Human name, e.g. "ResNet50". */
  title: string;
  inputSize: number;
  /** Keras `preprocess_input` mode of this architecture. */
  preprocess: PreprocessMode;
  /** Pooled feature size. */
  features: number;
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
