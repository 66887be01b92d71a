import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FeatureCache } from '../../src/train/feature-cache.ts';
import { repoRoot } from '../helpers/shared.ts';

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

  it('two writers in one process: both records kept, and never one photo\'s features under the other\'s key', () => {
    const dir = mkdtempSync(join(tmpdir(), 'catdog-cache-'));
    const a = FeatureCache.open(dir, 'resnet50', 'abcdef0123456789ffff', 2048);
    const b = FeatureCache.open(dir, 'resnet50', 'abcdef0123456789ffff', 2048);
    const cat = hash(0xca7);
    const dog = hash(0xd06);
    a.put(cat, 0, vec(1));
    b.put(dog, 0, vec(2));
    expect(a.get(cat, 0)?.[0]).toBe(1);
    expect(b.get(dog, 0)?.[0]).toBe(2);
    expect(b.get(cat, 0)?.[0] ?? null).not.toBe(2);
    a.close();
    b.close();
    const c = FeatureCache.open(dir, 'resnet50', 'abcdef0123456789ffff', 2048);
    expect(c.get(cat, 0)?.[0]).toBe(1);
    expect(c.get(dog, 0)?.[0]).toBe(2);
    expect(c.size).toBe(2);
    c.close();
  });

  it('two processes appending at once lose no record', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'catdog-cache-'));
    const startAt = String(Date.now() + 4000);
    const child = (from: number) =>
      spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'test/helpers/feature-cache-child.ts'), dir, String(from), '300'], {
        env: { ...process.env, START_AT: startAt },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
    const codes = await Promise.all([child(1), child(1001)].map(async (c) => (await once(c, 'exit'))[0]));
    expect(codes).toEqual([0, 0]);
    const cache = FeatureCache.open(dir, 'resnet50', 'abcdef0123456789ffff', 2048);
    expect(cache.size).toBe(600);
    for (const k of [1, 150, 300, 1001, 1150, 1300]) expect(cache.get(hash(k), 0)?.[2047]).toBe(k);
    cache.close();
  }, 60_000);
});
