import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { findOutliers, outliersCsv, readOutlierKeys } from '../../src/train/clean.ts';
import { FeatureCache } from '../../src/train/feature-cache.ts';
import type { ExtractedSample, FeatureStore } from '../../src/train/features.ts';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

function probs(top: number[]): Float32Array {
  const p = new Float32Array(1000).fill(0.0001);
  top.forEach((cls, i) => (p[cls] = 0.5 / (i + 1)));
  return p;
}

const sample = (key: string, label: 0 | 1) => ({ key, source: '/x/train.zip', name: key.split('/').pop()!, label, id: null, read: async () => Buffer.alloc(0) });

describe('outlier cleaning', () => {
  it('flags photos whose ImageNet top-k has no cat (281-287) or dog (151-268) class', () => {
    const dir = mkdtempSync(join(tmpdir(), 'catdog-clean-'));
    const imagenet = FeatureCache.open(dir, 'resnet50-imagenet', 'x'.repeat(16), 1000);
    const store: FeatureStore = { backbones: ['resnet50'], caches: new Map(), maxCaches: new Map(), imagenet, close: () => imagenet.close() };
    const h = (i: number) => i.toString(16).padStart(64, '0');
    const items: ExtractedSample[] = [
      { sample: sample('train.zip:train/cat.1.jpg', 0), hash: h(1) }, // tabby first: fine
      { sample: sample('train.zip:train/cat.2.jpg', 0), hash: h(2) }, // only objects: outlier
      { sample: sample('train.zip:train/dog.3.jpg', 1), hash: h(3) }, // a dog class at rank 10: fine with k = 10
      { sample: sample('train.zip:train/dog.4.jpg', 1), hash: h(4) }, // lion (291) is not a cat: outlier
    ];
    imagenet.put(h(1), 0, probs([281, 500, 600]));
    imagenet.put(h(2), 0, probs([500, 501, 502, 503, 504, 505, 506, 507, 508, 509, 510]));
    imagenet.put(h(3), 0, probs([500, 501, 502, 503, 504, 505, 506, 507, 508, 200]));
    imagenet.put(h(4), 0, probs([291, 290, 500]));
    const flagged = findOutliers(store, items, null, 10).map((o) => o.item.sample.key);
    expect(flagged).toEqual(['train.zip:train/cat.2.jpg', 'train.zip:train/dog.4.jpg']);
    expect(findOutliers(store, items, null, 5).map((o) => o.item.sample.key)).toContain('train.zip:train/dog.3.jpg');
    const csv = outliersCsv(findOutliers(store, items, null, 3));
    expect(csv.split('\n')[0]).toBe('file,label,top');
    expect(csv).toContain('train.zip:train/dog.4.jpg,dog,class_291 50.0%');
    const path = join(dir, 'reviewed.csv');
    writeFileSync(path, csv);
    // A labelled photo with no ImageNet probabilities at 224 px is a missing feature, not a clean photo.
    const uncached = { sample: sample('train.zip:train/cat.5.jpg', 0), hash: h(5) };
    expect(() => findOutliers(store, [...items, uncached], null, 10)).toThrow(/train\.zip:train\/cat\.5\.jpg has none cached: cache the 224 view first/);
    return readOutlierKeys(path).then((keys) => {
      expect([...keys]).toEqual(['train.zip:train/cat.2.jpg', 'train.zip:train/dog.3.jpg', 'train.zip:train/dog.4.jpg']);
      store.close();
    });
  });
});
