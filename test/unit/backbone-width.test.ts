/**
 * A backbone is one file and one line: a tiny generated backbone of another width (12 features,
 * where the ImageNet three have 2048), added to BACKBONES the way a MobileNet would be, goes through
 * the classifier, the feature cache, the training set, a fitted head (saved and validated) and an
 * answer, with nothing else told about its width.
 */
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKBONES } from '../../src/model/backbones/index.ts';
import { kerasNotopWeights, type BackboneDefinition } from '../../src/model/backbones/types.ts';
import { Classifier } from '../../src/model/classifier.ts';
import { LayerGraph } from '../../src/model/graph.ts';
import { HEAD_FORMAT, loadHead, saveHead, type HeadFile } from '../../src/model/head.ts';
import { modelSettings } from '../../src/model/settings.ts';
import type { BackboneName } from '../../src/model/types.ts';
import type { Sample } from '../../src/train/dataset.ts';
import { extractFeatures, openFeatureStore, trainingSet } from '../../src/train/features.ts';
import { fitLogreg } from '../../src/train/fit.ts';

const WIDTH = 12;
const NAME = 'tiny_mobile' as BackboneName;

/** The one new file: a small convolutional network, 32x32 in, WIDTH pooled features out. */
const tiny: BackboneDefinition = {
  name: NAME,
  title: 'TinyMobile',
  inputSize: 32,
  preprocess: 'tf',
  features: WIDTH,
  arena: false,
  kerasWeights: kerasNotopWeights('tiny', 'tiny_mobile', '0'.repeat(32)),
  defaultWeights: 'generated:7',
  build: () => {
    const g = new LayerGraph('tiny_mobile', 32);
    let x = g.input();
    x = g.conv(x, { name: 'conv1', filters: 8, kernel: 3, strides: 2, useBias: true });
    x = g.relu(x, 'conv1_relu');
    x = g.conv(x, { name: 'conv2', filters: WIDTH, kernel: 3, strides: 2, useBias: false });
    x = g.bn(x, { name: 'conv2_bn', epsilon: 1e-3 });
    x = g.relu(x, 'conv2_relu');
    g.gap(x, 'avg_pool');
    return g;
  },
};

const tmp = mkdtempSync(join(tmpdir(), 'catdog-width-'));
let classifier: Classifier;
const photos: Sample[] = [];

beforeAll(async () => {
  // The one line (here at run time; in the code base, in src/model/backbones/index.ts).
  (BACKBONES as Record<string, BackboneDefinition>)[NAME] = tiny;
  // Eight photos: "cats" blue, "dogs" orange, each with a little noise of its own.
  for (let i = 0; i < 8; i++) {
    const dog = i % 2 === 1;
    const raw = Buffer.alloc(40 * 40 * 3);
    for (let p = 0; p < 40 * 40; p++) {
      const n = ((p * 7919 + i * 104729) % 41) - 20;
      raw[p * 3] = (dog ? 220 : 40) + n;
      raw[p * 3 + 1] = (dog ? 120 : 90) + n;
      raw[p * 3 + 2] = (dog ? 30 : 210) + n;
    }
    const bytes = await sharp(raw, { raw: { width: 40, height: 40, channels: 3 } }).png().toBuffer();
    const name = `${dog ? 'dog' : 'cat'}.${i}.png`;
    photos.push({ key: `gen:${name}`, source: 'gen', name, label: dog ? 1 : 0, id: null, read: async () => bytes });
  }
  classifier = await Classifier.load({ model: modelSettings({ modelsDir: join(tmp, 'models') }), backbones: [NAME], head: null });
});

afterAll(async () => {
  await classifier?.close();
  delete (BACKBONES as Record<string, BackboneDefinition>)[NAME];
  rmSync(tmp, { recursive: true, force: true });
});

describe('a backbone of another width', () => {
  it('goes through the feature cache, the training set, a head and an answer, read from its definition', async () => {
    expect(classifier.backbones).toEqual([NAME]);
    const cacheDir = join(tmp, 'features');
    const first = await extractFeatures(photos, classifier, { cacheDir, flip: true });
    expect(first).toMatchObject({ computed: 8, cached: 0, failures: [] });
    // The cache holds WIDTH floats per record: 8 photos x 2 views.
    const store = openFeatureStore(classifier, cacheDir);
    try {
      const cache = store.caches.get(NAME)!;
      expect(cache.dim).toBe(WIDTH);
      expect(cache.path.endsWith(`.f${WIDTH}`)).toBe(true);
      expect(statSync(cache.path).size).toBe(16 * (32 + 1 + WIDTH * 4));
      // A rerun computes nothing.
      const again = await extractFeatures(photos, classifier, { cacheDir, flip: true });
      expect(again).toMatchObject({ computed: 0, cached: 8 });

      const set = trainingSet(store, first.ok, true);
      expect(set.d).toBe(WIDTH);
      expect(set.n).toBe(8);
      // Both poolings: twice the width, the average first (its maximum cached beside it).
      expect(store.maxCaches.get(NAME)!.dim).toBe(WIDTH);
      const both = trainingSet(store, first.ok, true, 'avg+max');
      expect(both.d).toBe(2 * WIDTH);
      expect(Array.from(both.x.subarray(0, WIDTH))).toEqual(Array.from(set.x.subarray(0, WIDTH)));
      const fitted = fitLogreg(set, { l2: [0.1], validationSplit: 0.25 });
      expect(fitted.kernel).toHaveLength(WIDTH);
      const file: HeadFile = {
        format: HEAD_FORMAT,
        backbones: [NAME],
        featureSize: WIDTH,
        kernel: [...fitted.kernel],
        bias: fitted.bias,
        ...(fitted.mean && fitted.scale ? { mean: [...fitted.mean], scale: [...fitted.scale] } : {}),
        tta: 'flip',
        meta: { id: 'm-tiny' },
      };
      const path = join(tmp, 'head.json');
      await saveHead(path, file);
      // A head that claims the ImageNet width for this backbone is refused.
      await expect(saveHead(join(tmp, 'wrong.json'), { ...file, featureSize: 2048, kernel: new Array(2048).fill(0) })).rejects.toThrow(
        /2048 features for tiny_mobile pooled by avg \(12 wide\)/,
      );
      expect(existsSync(join(tmp, 'wrong.json'))).toBe(false);

      classifier.setHead(await loadHead(path));
      const dog = await classifier.classify(await photos[1]!.read());
      const cat = await classifier.classify(await photos[0]!.read());
      expect(dog.backbones).toEqual([NAME]);
      expect(dog.model).toBe('m-tiny');
      expect(dog.dog).toBeGreaterThan(cat.dog);
    } finally {
      store.close();
    }
  });
});
