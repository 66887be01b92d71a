/**
 * Pooling (src/model/pooling.ts): an `avg+max` head reads, per backbone, the average and then the
 * maximum; the cache, the cross-validation matrices and the classifier agree on that layout.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fusedWidth } from '../../src/model/backbones/index.ts';
import { fuseViews } from '../../src/model/classifier.ts';
import { parsePooling, poolingParts } from '../../src/model/pooling.ts';
import { parseViews, viewCode } from '../../src/model/views.ts';
import { fusedFromStore, openFeatureStoreFor, viewData, type ExtractedSample } from '../../src/train/features.ts';

const sample = (name: string, label: 0 | 1): ExtractedSample['sample'] => ({
  key: `x:${name}`,
  source: '/x/train.zip',
  name,
  label,
  id: null,
  read: async () => Buffer.alloc(0),
});
const vec = (seed: number) => Float32Array.from({ length: 2048 }, (_, i) => ((i * 7 + seed * 13) % 101) / 10);

describe('pooling', () => {
  it('parses the poolings there are and says which there are otherwise', () => {
    expect(parsePooling('avg')).toBe('avg');
    expect(parsePooling(' avg+max ')).toBe('avg+max');
    expect(() => parsePooling('max')).toThrow(/"max" is not a pooling: use avg or avg\+max/);
    expect(poolingParts('avg')).toBe(1);
    expect(fusedWidth(['resnet50'])).toBe(2048);
    expect(fusedWidth(['resnet50'], 'avg+max')).toBe(4096);
    expect(fusedWidth(['resnet50', 'xception'], 'avg+max')).toBe(8192);
  });

  it('lays out [average, maximum] per backbone the same way in the cache matrices, the cached fused vector and the classifier', () => {
    const dir = mkdtempSync(join(tmpdir(), 'catdog-pooling-'));
    const store = openFeatureStoreFor([{ name: 'resnet50', weightsId: 'w'.repeat(16), hasTop: false }], dir);
    const views = parseViews('224,288');
    const items: ExtractedSample[] = [
      { sample: sample('cat.1.jpg', 0), hash: '1'.padStart(64, '0') },
      { sample: sample('dog.2.jpg', 1), hash: '2'.padStart(64, '0') },
      { sample: sample('dog.3.jpg', 1), hash: '3'.padStart(64, '0') }, // its maximum at 288 is missing
    ];
    items.forEach((it, i) =>
      views.forEach((v, k) => {
        store.caches.get('resnet50')!.put(it.hash, viewCode(v), vec(10 * i + k));
        if (i < 2 || k === 0) store.maxCaches.get('resnet50')!.put(it.hash, viewCode(v), vec(100 + 10 * i + k));
      }),
    );
    const avg = viewData(store, items, views);
    expect(avg.data.d).toBe(2048);
    expect(avg.missing).toBe(0);
    const both = viewData(store, items, views, 'avg+max');
    expect(both.data.d).toBe(4096);
    expect(both.missing).toBe(1); // a view's maximum not cached: left out and counted, as a missing average is
    expect(both.items.map((x) => x.sample.name)).toEqual(['cat.1.jpg', 'dog.2.jpg']);
    for (let i = 0; i < 2; i++)
      views.forEach((_, k) => {
        const row = both.data.x[k]!.subarray(i * 4096, (i + 1) * 4096);
        expect(Array.from(row.subarray(0, 2048))).toEqual(Array.from(vec(10 * i + k)));
        expect(Array.from(row.subarray(2048))).toEqual(Array.from(vec(100 + 10 * i + k)));
      });
    const fused = fusedFromStore(store, items[1]!.hash, views, 'avg+max');
    const same = fuseViews(['resnet50'], { resnet50: [vec(10), vec(11)] }, { resnet50: [vec(110), vec(111)] });
    expect(Array.from(fused)).toEqual(Array.from(same));
    expect(fused[5]).toBeCloseTo((vec(10)[5]! + vec(11)[5]!) / 2, 6);
    expect(fused[2048 + 5]).toBeCloseTo((vec(110)[5]! + vec(111)[5]!) / 2, 6);
    expect(() => fusedFromStore(store, items[2]!.hash, views, 'avg+max')).toThrow(/missing from the cache/);
    expect(fusedFromStore(store, items[2]!.hash, views)).toHaveLength(2048);
    store.close();
  });
});
