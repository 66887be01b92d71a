/**
 * The container's entrypoint (scripts/container-entrypoint.sh) seeds the model registry on the
 * data volume: the shipped default is active on the first start, and what was trained, promoted
 * or rolled back in an earlier container stays so in a new one. Run with /bin/sh on temp folders.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { HEAD_FORMAT, type HeadFile } from '../../src/model/head.ts';
import { Registry } from '../../src/model/registry.ts';
import { repoRoot } from '../helpers/shared.ts';

const entrypoint = join(repoRoot, 'scripts', 'container-entrypoint.sh');
const committed = join(repoRoot, 'models', 'registry');

/** The committed registry's heads and state: what the image ships. */
const shippedIds = readdirSync(committed).filter((d) => existsSync(join(committed, d, 'head.json'))).sort();
const shippedState = JSON.parse(readFileSync(join(committed, 'active.json'), 'utf8')) as { active: string; history: string[] };

function headFile(valLoss: number): HeadFile {
  return { format: HEAD_FORMAT, backbones: ['resnet50'], featureSize: 2048, kernel: Array(2048).fill(0), bias: 0, meta: { metrics: { valLoss } } };
}

describe('container entrypoint', () => {
  let root: string;
  let shipped: string;
  let volume: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'catdog-entrypoint-'));
    shipped = join(root, 'image-registry');
    volume = join(root, 'data', 'registry');
    cpSync(committed, shipped, { recursive: true });
  });

  /** Runs the entrypoint with `command`; returns its stdout. */
  function start(...command: string[]): string {
    return execFileSync('/bin/sh', [entrypoint, ...command], {
      env: { PATH: process.env.PATH, CATDOG_REGISTRY_DIR: volume, CATDOG_SHIPPED_REGISTRY: shipped },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }

  it('seeds the volume on the first start and execs the command with the environment', async () => {
    expect(start('sh', '-c', 'echo "$CATDOG_REGISTRY_DIR"; exec echo "$0 $1"', 'a', 'b')).toBe(`${volume}\na b\n`);
    const registry = new Registry(volume);
    expect(shippedState.active).toMatch(/^m-/);
    expect(registry.readActiveState()).toEqual(shippedState);
    const models = await registry.listModels();
    expect(models.map((m) => m.id)).toEqual(shippedIds);
    expect(models.filter((m) => m.active).map((m) => m.id)).toEqual([shippedState.active]);
    expect(readdirSync(volume).sort()).toEqual(['active.json', ...shippedIds].sort());
  });

  it('keeps what a container trained and promoted; a newer image adds its head without making it active', async () => {
    start('true');
    const registry = new Registry(volume);
    const shippedActive = registry.readActiveState().active!;
    const trainedState = { active: 'm-20990101T000000Z', history: [...shippedState.history, shippedActive] };
    const trained = await registry.addModel(headFile(0.01), 'm-20990101T000000Z');
    await registry.promote(trained);
    expect(registry.readActiveState()).toEqual(trainedState);

    start('true'); // a new container of the same image
    expect(registry.readActiveState()).toEqual(trainedState);

    // A newer image ships another default head.
    mkdirSync(join(shipped, 'm-21000101T000000Z'));
    writeFileSync(join(shipped, 'm-21000101T000000Z', 'head.json'), JSON.stringify({ ...headFile(0.02), meta: { id: 'm-21000101T000000Z' } }));
    writeFileSync(join(shipped, 'active.json'), JSON.stringify({ active: 'm-21000101T000000Z', history: [] }));
    start('true');
    expect(registry.readActiveState()).toEqual(trainedState);
    expect((await registry.listModels()).map((m) => m.id)).toEqual([...shippedIds, trained, 'm-21000101T000000Z'].sort());
    expect(readdirSync(volume).filter((f) => f.includes('partial') || f.endsWith('.tmp'))).toEqual([]);
  });

  it('leaves the registry alone when CATDOG_REGISTRY_DIR is the shipped one or unset', () => {
    const out = execFileSync('/bin/sh', [entrypoint, 'echo', 'ran'], {
      env: { PATH: process.env.PATH, CATDOG_SHIPPED_REGISTRY: shipped },
      encoding: 'utf8',
    });
    expect(out).toBe('ran\n');
    expect(existsSync(volume)).toBe(false);
  });
});
