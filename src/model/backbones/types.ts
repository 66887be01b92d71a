import type { LayerGraph } from '../graph.ts';
import type { BackboneName, PreprocessMode } from '../types.ts';

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
