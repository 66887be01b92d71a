/**
 * Issue #8, part 3 (model registry): concurrent changes in one process and across processes lose
 * nothing, a kill -9 leaves no temporary files behind for good, the history is bounded, and an id
 * that is not a model id never reaches the file system (part 1: a crafted `model-discard:../x`).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HEAD_FORMAT, type HeadFile } from '../../src/model/head.ts';
import { HISTORY_KEEP, Registry } from '../../src/model/registry.ts';
import { repoRoot } from '../helpers/shared.ts';

function headFile(valLoss: number): HeadFile {
  const kernel = Array.from({ length: 2048 }, (_, i) => (i === 0 ? 1 : 0));
  return { format: HEAD_FORMAT, backbones: ['resnet50'], featureSize: 2048, kernel, bias: 0, meta: { metrics: { valLoss } } };
}

let root: string;
let dir: string;
let registry: Registry;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'catdog-reg-'));
  dir = join(root, 'registry');
  registry = new Registry(dir);
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

async function models(n: number, prefix = 'm-t'): Promise<string[]> {
  const ids: string[] = [];
  for (let k = 0; k < n; k++) ids.push(await registry.addModel(headFile(0.1), `${prefix}${k}`));
  return ids;
}

/** The pid of a process that has exited (so no process runs under it). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  await once(child, 'exit');
  return child.pid!;
}

describe('model registry under concurrency and crashes', () => {
  it('concurrent use/promote in one process all succeed and lose no history entry', async () => {
    const ids = await models(12);
    const results = await Promise.allSettled(ids.map((id, k) => (k % 2 ? registry.useModel(id) : registry.promote(id, { force: true }))));
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    const state = registry.readActiveState();
    expect(new Set([...state.history, state.active]).size).toBe(12);
    expect(state.history).toHaveLength(11);
    expect(readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('four processes changing the active model at once lose no history entry', async () => {
    const ids = await models(20);
    const groups = [0, 1, 2, 3].map((g) => ids.filter((_, k) => k % 4 === g));
    const startAt = String(Date.now() + 4000);
    const children = groups.map((g) =>
      spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'test/helpers/registry-child.ts'), dir, ...g], {
        env: { ...process.env, START_AT: startAt },
        stdio: ['ignore', 'ignore', 'pipe'],
      }),
    );
    const codes = await Promise.all(
      children.map(async (c) => {
        let err = '';
        c.stderr!.on('data', (d) => (err += d));
        const [code] = await once(c, 'exit');
        return code === 0 ? 0 : err;
      }),
    );
    expect(codes).toEqual([0, 0, 0, 0]);
    const state = registry.readActiveState();
    expect(state.history).toHaveLength(19);
    expect(new Set([...state.history, state.active])).toEqual(new Set(ids));
  }, 60_000);

  it('sweeps temporary files and staging folders left by a killed process, keeps the history bounded', async () => {
    // What a kill -9 between write and rename leaves, found by the next process to use the registry.
    const pid = await deadPid();
    mkdirSync(dir, { recursive: true });
    const leftovers = [`active.json.${pid}.tmp`, `active.json.${pid}-abcd1234.tmp`];
    for (const name of leftovers) writeFileSync(join(dir, name), '{"active":');
    mkdirSync(join(dir, `m-x.partial-${pid}-abcd1234`));
    const ids = await models(HISTORY_KEEP + 5);
    for (const id of ids) await registry.useModel(id);
    expect(readdirSync(dir).filter((n) => n.includes('.tmp') || n.includes('.partial-'))).toEqual([]);
    const state = registry.readActiveState();
    expect(state.active).toBe(ids.at(-1));
    expect(state.history).toEqual(ids.slice(-1 - HISTORY_KEEP, -1));
  });

  it('refuses an id that is not a model id before touching the disk (no ../ out of the registry)', async () => {
    await models(1);
    const outside = join(root, 'x');
    mkdirSync(outside);
    writeFileSync(join(outside, 'head.json'), JSON.stringify(headFile(0.1)));
    for (const bad of ['../x', '..', 'm-a/../../x', '/tmp', 'm-a\\..\\x', '']) {
      await expect(registry.removeModel(bad)).rejects.toThrow(/is not a model id/);
      await expect(registry.loadModel(bad)).rejects.toThrow(/is not a model id/);
    }
    expect(existsSync(join(outside, 'head.json'))).toBe(true);
  });
});
