/**
 * The model registry: versioned heads under models/registry/<id>/head.json, and which one is
 * active (models/registry/active.json: the active id and the history used by rollback).
 * Writes go through a uniquely named temporary file (fsynced), a rename and an fsync of the
 * folder, so a killed process or a power cut leaves either the old state or the new one. Every
 * change holds the registry's lock (<registry>/.lock, a pid lock file: one writer at a time
 * across processes, the bot and the CLI alike); temporary files and staging folders left by a
 * killed process are swept before the first change; the rollback history keeps the last
 * HISTORY_KEEP ids. Model ids must match MODEL_ID_PATTERN before any path is built from them.
 */
import { existsSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ModelError } from '../errors.ts';
import { processAlive, withFileLock } from '../file-lock.ts';
import { type Head, loadHead, saveHead, type HeadFile } from './head.ts';

export interface ActiveState {
  active: string | null;
  /** Ids that were active before, most recent last. */
  history: string[];
}

/** What a model id looks like: `m-` then letters, digits and single dots, maybe `-<n>` (m-20250101T120000.123Z-2). */
export const MODEL_ID_PATTERN = /^m-[A-Za-z0-9]+(?:\.[A-Za-z0-9]+)*(?:-\d{1,6})?$/;

/** Rollback history entries kept (older ones are dropped). */
export const HISTORY_KEEP = 20;

/** Throws unless `id` is a well-formed model id (so no path outside the registry is ever built). */
export function checkModelId(id: string): string {
  if (typeof id !== 'string' || id.length > 100 || !MODEL_ID_PATTERN.test(id)) {
    throw new ModelError('model_id_invalid', `"${String(id).slice(0, 60)}" is not a model id (they look like m-20250101T120000.000Z).`);
  }
  return id;
}

const swept = new Set<string>();

/** The registry in one folder: models/registry by default, CATDOG_REGISTRY_DIR (config) moves it. */
export class Registry {
  constructor(readonly dir: string) {}

  private get statePath(): string {
    return join(this.dir, 'active.json');
  }

  readActiveState(): ActiveState {
    const p = this.statePath;
    if (!existsSync(p)) return { active: null, history: [] };
    try {
      return JSON.parse(readFileSync(p, 'utf8')) as ActiveState;
    } catch (err) {
      throw new ModelError('registry_corrupt', `The model registry state ${p} is not valid JSON.`, { cause: err });
    }
  }

  headPath(id: string): string {
    return join(this.dir, checkModelId(id), 'head.json');
  }

  /** Runs a change of the registry holding its lock (one writer across processes), after the first sweep. */
  private async locked<T>(fn: () => Promise<T>): Promise<T> {
    await mkdir(this.dir, { recursive: true });
    return withFileLock(
      join(this.dir, '.lock'),
      async () => {
        if (!swept.has(this.dir)) {
          swept.add(this.dir);
          sweepRegistry(this.dir);
        }
        return fn();
      },
      { what: `The model registry ${this.dir}` },
    );
  }

  /** Path of the active head, or null when no model is active. */
  activeHeadPath(): string | null {
    const { active } = this.readActiveState();
    return active ? this.headPath(active) : null;
  }

  private async writeState(state: ActiveState): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const bounded = { active: state.active, history: state.history.slice(-HISTORY_KEEP) };
    await writeAtomic(this.statePath, `${JSON.stringify(bounded, null, 2)}\n`);
  }

  /** Stores a head as a new version; returns its id. Does not make it active. */
  async addModel(head: HeadFile, id?: string): Promise<string> {
    if (id !== undefined) checkModelId(id);
    await mkdir(this.dir, { recursive: true });
    const base = id ?? newModelId();
    // Ids carry milliseconds; versions stored in the same millisecond get a suffix (-2, -3…).
    for (let n = 1; ; n++) {
      const finalId = n === 1 ? base : `${base}-${n}`;
      const dir = join(this.dir, finalId);
      const staging = `${dir}.partial-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
      await mkdir(staging, { recursive: true });
      await saveHead(join(staging, 'head.json'), { ...head, meta: { ...head.meta, id: finalId } });
      try {
        await this.locked(async () => {
          if (existsSync(dir)) throw Object.assign(new Error('exists'), { code: 'EEXIST' });
          await rename(staging, dir);
          await fsyncDir(this.dir);
        });
        return finalId;
      } catch (err) {
        await rm(staging, { recursive: true, force: true });
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EEXIST' && code !== 'ENOTEMPTY') throw err;
        if (id) throw new ModelError('model_exists', `A model ${id} is already in the registry.`);
      }
    }
  }

  async listModels(): Promise<{ id: string; head: HeadFile; active: boolean }[]> {
    if (!existsSync(this.dir)) return [];
    const { active } = this.readActiveState();
    const out: { id: string; head: HeadFile; active: boolean }[] = [];
    for (const e of await readdir(this.dir, { withFileTypes: true })) {
      if (!e.isDirectory() || !MODEL_ID_PATTERN.test(e.name)) continue;
      const p = this.headPath(e.name);
      if (!existsSync(p)) continue;
      out.push({ id: e.name, head: JSON.parse(await readFile(p, 'utf8')) as HeadFile, active: e.name === active });
    }
    return out.sort((a, b) => a.id.localeCompare(b.id));
  }

  async loadModel(id: string): Promise<Head> {
    if (!existsSync(this.headPath(id))) throw new ModelError('model_unknown', `No model ${id} in ${this.dir}.`);
    return loadHead(this.headPath(id));
  }

  /** Makes `id` the active model. */
  async useModel(id: string): Promise<void> {
    await this.loadModel(id);
    await this.locked(async () => {
      const state = this.readActiveState();
      if (state.active === id) return;
      await this.writeState({ active: id, history: state.active ? [...state.history, state.active] : state.history });
    });
  }

  /** Goes back to the previously active model; returns its id. */
  async rollback(): Promise<string> {
    return this.locked(async () => {
      const state = this.readActiveState();
      const previous = state.history.at(-1);
      if (!previous) throw new ModelError('no_rollback', 'There is no earlier model to roll back to.');
      await this.loadModel(previous);
      await this.writeState({ active: previous, history: state.history.slice(0, -1) });
      return previous;
    });
  }

  /** Makes `id` the active model if its validation log loss beats the active one's (or `force`). */
  async promote(id: string, options: { force?: boolean } = {}): Promise<{ promoted: boolean; reason: string }> {
    const candLoss = validationLoss(await this.loadModel(id));
    const { active } = this.readActiveState();
    if (active && active !== id && !options.force) {
      const curLoss = validationLoss(await this.loadModel(active));
      if (!(candLoss < curLoss)) {
        return {
          promoted: false,
          reason: `validation log loss ${candLoss.toFixed(4)} does not beat the active model ${active} (${curLoss.toFixed(4)}); use --force to promote anyway`,
        };
      }
    }
    await this.useModel(id);
    return { promoted: true, reason: active ? `replaces ${active}` : 'first active model' };
  }

  /**
   * Deletes a stored model that is neither active nor in the rollback history (a discarded
   * candidate). Throws a ModelError otherwise.
   */
  async removeModel(id: string): Promise<void> {
    checkModelId(id);
    await this.loadModel(id);
    await this.locked(async () => {
      const state = this.readActiveState();
      if (state.active === id) throw new ModelError('model_active', `Model ${id} is the active model; it cannot be removed.`);
      if (state.history.includes(id)) throw new ModelError('model_in_history', `Model ${id} is in the rollback history; it cannot be removed.`);
      await rm(join(this.dir, id), { recursive: true, force: true });
    });
  }
}

export function newModelId(date = new Date()): string {
  return `m-${date.toISOString().replace(/[-:]/g, '')}`;
}

function validationLoss(head: Head): number {
  const v = head.file.meta?.metrics?.valLoss;
  return typeof v === 'number' ? v : Infinity;
}

async function fsyncDir(dir: string): Promise<void> {
  const fd = await open(dir, 'r');
  try {
    await fd.sync();
  } catch {
    /* some file systems do not sync folders */
  } finally {
    await fd.close();
  }
}

async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.${process.pid}-${Math.random().toString(36).slice(2, 10)}.tmp`;
  const fd = await open(tmp, 'wx');
  try {
    await fd.writeFile(text);
    await fd.sync();
  } finally {
    await fd.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(join(path, '..'));
}

/** The pid in a temporary name written by writeAtomic (`….<pid>-<random>.tmp`) or addModel (`….partial-<pid>-<random>`). */
function leftoverPid(name: string): number | null {
  const m = /\.(\d+)-[a-z0-9]+\.tmp$/.exec(name) ?? /\.(\d+)\.tmp$/.exec(name) ?? /\.partial-(\d+)-[a-z0-9]+$/.exec(name);
  return m ? Number(m[1]) : null;
}

/**
 * Removes temporary files and staging folders left in the registry folder `dir` by processes
 * that no longer run (a kill -9 between write and rename). Returns the names removed.
 */
export function sweepRegistry(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const removed: string[] = [];
  for (const name of readdirSync(dir)) {
    const pid = leftoverPid(name);
    if (pid === null || (pid !== process.pid && processAlive(pid))) continue;
    if (pid === process.pid) {
      // Ours: only when old (an operation of this process may be writing it right now).
      try {
        if (Date.now() - statSync(join(dir, name)).mtimeMs < 60_000) continue;
      } catch {
        continue;
      }
    }
    rmSync(join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}
