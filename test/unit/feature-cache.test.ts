import { appendFileSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FeatureCache } from '../../src/train/feature-cache.ts';

const hash = (i: number) => i.toString(16).padStart(64, '0');
const vec = (seed: number) => Float32Array.from({ length: 2048 }, (_, j) => seed + j / 1000);

describe('feature cache', () => {
  it('keeps records across reopen, per view, and cuts a torn last record', () => {
    const dir = mkdtempSync(join(tmpdir(), 'catdog-cache-'));
    const c = FeatureCache.open(dir, 'resnet50', 'abcdef0123456789ffff', 2048);
    c.put(hash(1), 0, vec(1));
    c.put(hash(1), 1, vec(2));
    c.put(hash(2), 0, vec(3));
    c.put(hash(2), 0, vec(99)); // already there: kept as first written
    expect(c.size).toBe(3);
    c.close();
    // A process killed in the middle of a write leaves part of a record.
    appendFileSync(c.path, Buffer.alloc(1000, 7));
    const d = FeatureCache.open(dir, 'resnet50', 'abcdef0123456789ffff', 2048);
    expect(d.size).toBe(3);
    expect(statSync(d.path).size).toBe(3 * (33 + 2048 * 4));
    expect(d.get(hash(1), 1)![5]).toBeCloseTo(2.005, 5);
    expect(d.get(hash(2), 0)![0]).toBe(3);
    expect(d.get(hash(2), 1)).toBeNull();
    expect(d.has(hash(3))).toBe(false);
    d.put(hash(3), 0, vec(4));
    d.close();
    const e = FeatureCache.open(dir, 'resnet50', 'abcdef0123456789ffff', 2048);
    expect(e.get(hash(3), 0)![0]).toBe(4);
    e.close();
    // Another weights identity is another cache.
    const other = FeatureCache.open(dir, 'resnet50', '0000000000000000', 2048);
    expect(other.size).toBe(0);
    other.close();
  });
});
