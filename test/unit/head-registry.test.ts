import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { ModelError } from '../../src/errors.ts';
import { HEAD_FORMAT, Head, loadHead, type HeadFile } from '../../src/model/head.ts';
import { Registry } from '../../src/model/registry.ts';
import { ModelAdmin } from '../../src/jobs/models.ts';

function headFile(valLoss: number, bias = 0): HeadFile {
  const kernel = Array.from({ length: 2048 }, (_, i) => (i === 0 ? 1 : 0));
  return { format: HEAD_FORMAT, backbones: ['resnet50'], featureSize: 2048, kernel, bias, meta: { metrics: { valLoss } } };
}

describe('head', () => {
  it('is Dense(1, sigmoid) on standardised features', () => {
    const f = headFile(0.1, -1);
    f.mean = Array(2048).fill(1);
    f.scale = Array(2048).fill(2);
    const h = new Head(f);
    const x = new Float32Array(2048);
    x[0] = 5; // (5 - 1) / 2 = 2; z = 2 - 1 = 1
    expect(h.predict(x)).toBeCloseTo(1 / (1 + Math.exp(-1)), 6);
  });

  it('refuses a head trained on other backbones, saying what to do', () => {
    const h = new Head(headFile(0.1));
    expect(() => h.checkBackbones(['resnet50', 'xception'])).toThrow(/trained on resnet50 features, but the active backbones are resnet50 \+ xception/);
    expect(() => h.checkBackbones(['resnet50'])).not.toThrow();
  });

  it('rejects malformed head files with a ModelError', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'catdog-head-'));
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ ...headFile(0.1), kernel: [1, 2, 3] }));
    await expect(loadHead(bad)).rejects.toThrow(/kernel has 3 values/);
    writeFileSync(bad, '{not json');
    await expect(loadHead(bad)).rejects.toThrow(ModelError);
    await expect(loadHead(join(dir, 'missing.json'))).rejects.toThrow(/Cannot read the head file/);
  });
});

describe('model registry', () => {
  let registry: Registry;
  beforeEach(() => {
    registry = new Registry(join(mkdtempSync(join(tmpdir(), 'catdog-models-')), 'registry'));
  });

  it('promotes only a better model unless forced, and rolls back', async () => {
    expect(registry.activeHeadPath()).toBeNull();
    const a = await registry.addModel(headFile(0.05), 'm-a');
    const b = await registry.addModel(headFile(0.08), 'm-b');
    const c = await registry.addModel(headFile(0.03), 'm-c');
    expect((await registry.promote(a)).promoted).toBe(true);
    const worse = await registry.promote(b);
    expect(worse.promoted).toBe(false);
    expect(worse.reason).toMatch(/does not beat/);
    expect(registry.readActiveState().active).toBe('m-a');
    expect((await registry.promote(c)).promoted).toBe(true);
    expect((await registry.promote(b, { force: true })).promoted).toBe(true);
    expect(registry.readActiveState()).toEqual({ active: 'm-b', history: ['m-a', 'm-c'] });
    expect(await registry.rollback()).toBe('m-c');
    expect(await registry.rollback()).toBe('m-a');
    await expect(registry.rollback()).rejects.toThrow(/no earlier model/);
    expect((await registry.listModels()).map((m) => [m.id, m.active])).toEqual([
      ['m-a', true],
      ['m-b', false],
      ['m-c', false],
    ]);
    await expect(registry.useModel('m-zzz')).rejects.toThrow(/No model m-zzz/);
  });
});

describe('model ids', () => {
  it('stay unique when two models are stored in the same instant', async () => {
    const registry = new Registry(mkdtempSync(join(tmpdir(), 'catdog-ids-')));
    const ids = await Promise.all([0, 1, 2].map(() => registry.addModel(headFile(0.1))));
    expect(new Set(ids).size).toBe(3);
    for (const id of ids) expect(id).toMatch(/^m-\d{8}T\d{6}\.\d{3}Z(-\d+)?$/);
  });
});

describe('model admin (/model promote and rollback)', () => {
  it('refuses a head the live backbones cannot answer with — an fp32 head while they run int8 — before the registry changes', async () => {
    const registry = new Registry(join(mkdtempSync(join(tmpdir(), 'catdog-admin-')), 'registry'));
    const fp32 = await registry.addModel(headFile(0.2));
    await registry.promote(fp32, { force: true });
    const int8 = await registry.addModel({ ...headFile(0.1, 1), precision: 'int8' });
    const live: string[] = [];
    const admin = new ModelAdmin(
      { backbones: ['resnet50'], precisions: { resnet50: 'int8' }, info: () => ({ model: live.at(-1) ?? null }), setHead: (h) => void live.push(String(h.file.bias)) },
      registry,
    );
    expect(await admin.promote(int8)).toEqual({ previous: fp32 });
    expect(live).toEqual(['1']);
    // Rolling back would make the fp32 head active: refused, and nothing moved.
    await expect(admin.rollback()).rejects.toMatchObject({ code: 'head_precision' });
    await expect(admin.promote(fp32)).rejects.toThrow(/trained on fp32 backbone features, but the backbones run in int8/);
    expect(registry.readActiveState()).toMatchObject({ active: int8, history: [fp32] });
    expect(live).toEqual(['1']);
  });
});
