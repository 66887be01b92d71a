/**
 * The layer graph, weight binding and ONNX export on small graphs and generated weights:
 * shapes, Keras "same" padding, name and order matching, batch-norm folding, clear errors.
 */
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { BACKBONES } from '../../src/model/backbones/index.ts';
import { legacyResnetName } from '../../src/model/backbones/resnet50.ts';
import { kerasNotopWeights, type BackboneDefinition } from '../../src/model/backbones/types.ts';
import { convAxis, LayerGraph } from '../../src/model/graph.ts';
import { batchNormAffine, exportOnnx } from '../../src/model/onnx/export.ts';
import { bindWeights } from '../../src/model/weights/bind.ts';
import { generateWeights, rng } from '../../src/model/weights/generate.ts';
import type { WeightSource } from '../../src/model/weights/types.ts';
import { ModelError } from '../../src/errors.ts';

describe('backbone graphs', () => {
  it('have Keras weighted-layer counts, 2048 pooled features and the published compute', () => {
    const expected = { resnet50: [106, 3.9], inception_v3: [188, 5.7], xception: [80, 8.4] } as const;
    for (const [name, [layers, gmac]] of Object.entries(expected)) {
      const g = BACKBONES[name as keyof typeof expected].build();
      expect(g.weighted().length).toBe(layers);
      expect(g.output.op).toBe('gap');
      expect(g.output.shape.c).toBe(2048);
      expect(g.macs() / 1e9).toBeCloseTo(gmac, 0);
    }
  });

  it('end where Keras no-top models end: 7x7, 8x8 and 10x10 maps', () => {
    expect(BACKBONES.resnet50.build().node('conv5_block3_out').shape).toEqual({ h: 7, w: 7, c: 2048 });
    expect(BACKBONES.inception_v3.build().node('mixed10').shape).toEqual({ h: 8, w: 8, c: 2048 });
    expect(BACKBONES.xception.build().node('block14_sepconv2_act').shape).toEqual({ h: 10, w: 10, c: 2048 });
  });

  it('maps current Keras ResNet50 names to the Keras 2.2 ones', () => {
    expect(legacyResnetName('conv1_conv')).toBe('conv1');
    expect(legacyResnetName('conv1_bn')).toBe('bn_conv1');
    expect(legacyResnetName('conv2_block1_0_conv')).toBe('res2a_branch1');
    expect(legacyResnetName('conv3_block4_2_bn')).toBe('bn3d_branch2b');
    expect(legacyResnetName('conv5_block3_3_conv')).toBe('res5c_branch2c');
    expect(legacyResnetName('predictions')).toBe('fc1000');
    expect(legacyResnetName('conv2_block1_out')).toBeNull();
  });

  it('computes TF "same" padding with the extra pixel at the end', () => {
    expect(convAxis(299, 3, 2, 'valid')).toEqual({ out: 149, before: 0, after: 0 });
    expect(convAxis(74, 3, 2, 'same')).toEqual({ out: 37, before: 0, after: 1 });
    expect(convAxis(8, 3, 1, 'same')).toEqual({ out: 8, before: 1, after: 1 });
  });
});

/** A tiny network with every op kind, to compare ONNX Runtime against a direct computation. */
function tinyDefinition(): BackboneDefinition {
  return {
    name: 'resnet50',
    title: 'Tiny',
    inputSize: 6,
    preprocess: 'tf',
    features: 4,
    arena: false,
    kerasWeights: kerasNotopWeights('tiny', 'tiny', '0'.repeat(32)),
    defaultWeights: 'generated',
    build: () => {
      const g = new LayerGraph('tiny', 6);
      let x = g.input();
      x = g.zeroPad(x, 1, 'pad');
      x = g.conv(x, { name: 'c1', filters: 4, kernel: 3, strides: 2, useBias: true });
      x = g.bn(x, { name: 'b1', epsilon: 1e-3 });
      x = g.relu(x, 'r1');
      g.gap(x, 'avg_pool');
      return g;
    },
  };
}

describe('ONNX export', () => {
  it('folds zero padding and batch norm and matches a direct computation', async () => {
    const def = tinyDefinition();
    const src = generateWeights(def, 3);
    const bound = bindWeights(def, src);
    const session = await ort.InferenceSession.create(exportOnnx(bound));
    const r = rng(5);
    const x = Float32Array.from({ length: 3 * 36 }, () => r() * 2 - 1); // NCHW
    const out = (await session.run({ input: new ort.Tensor('float32', x, [1, 3, 6, 6]) })).features.data as Float32Array;
    // Direct: pad 1, conv 3x3 stride 2 (HWIO kernel), bias, BN, ReLU, mean.
    const w = bound.weights.get('c1')!;
    const { scale, shift } = batchNormAffine(bound.weights.get('b1')!, 1e-3, 4);
    const px = (c: number, h: number, wi: number) => (h < 0 || h >= 6 || wi < 0 || wi >= 6 ? 0 : x[c * 36 + h * 6 + wi]);
    for (let o = 0; o < 4; o++) {
      let sum = 0;
      for (let oh = 0; oh < 3; oh++)
        for (let ow = 0; ow < 3; ow++) {
          let v = w.bias!.values[o];
          for (let kh = 0; kh < 3; kh++)
            for (let kw = 0; kw < 3; kw++)
              for (let c = 0; c < 3; c++) v += px(c, oh * 2 + kh - 1, ow * 2 + kw - 1) * w.kernel!.values[((kh * 3 + kw) * 3 + c) * 4 + o];
          sum += Math.max(0, v * scale[o] + shift[o]);
        }
      expect(out[o]).toBeCloseTo(sum / 9, 4);
    }
  });

  it('refuses weights that do not fit, naming the layer', () => {
    const def = BACKBONES.xception;
    const src = generateWeights(def, 1);
    const broken: WeightSource = { ...src, layers: src.layers.filter((l) => l.name !== 'block7_sepconv2') };
    expect(() => bindWeights(def, broken)).toThrow(/block7_sepconv2/);
    const wrongShape: WeightSource = {
      ...src,
      layers: src.layers.map((l) => (l.name === 'block1_conv1' ? { ...l, weights: { kernel: { shape: [3, 3, 3, 16], values: new Float32Array(432) } } } : l)),
    };
    expect(() => bindWeights(def, wrongShape)).toThrow(ModelError);
    expect(() => bindWeights(BACKBONES.inception_v3, src)).toThrow(/do not fit InceptionV3/);
  });

  it('matches generated names by number, whatever the session offset', () => {
    const def = BACKBONES.inception_v3;
    const src = generateWeights(def, 1);
    // Rename conv2d_1..94 to conv2d_95..188, as a second model in one Keras session would be.
    const shifted: WeightSource = {
      ...src,
      layers: src.layers.map((l) => ({ ...l, name: l.name.replace(/_(\d+)$/, (_, n) => `_${Number(n) + 94}`) })),
    };
    const a = bindWeights(def, src);
    const b = bindWeights(def, shifted);
    expect(b.weights.get('conv2d_50')!.kernel!.values).toBe(a.weights.get('conv2d_50')!.kernel!.values);
  });
});
