/**
 * A lock across processes on one machine: a lock file created with O_EXCL holding the owner's
 * pid. A lock whose owner is no longer running (killed with -9, say) is stale and broken; a lock
 * file still empty after a few seconds (its writer died between create and write) too. Waits are
 * bounded: past `timeoutMs` the caller gets an Error naming the lock and its holder.
 *
 * Two flavours: `withFileLock` (async, also serialised inside the process) for the model
 * registry, `withFileLockSync` for the feature cache's short appends.
 */
import { closeSync, linkSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';

export interface LockOptions {
  /** Longest wait for the lock (default 30 s). */
  timeoutMs?: number;
  /** What the lock protects, for the error message. */
  what?: string;
}

const EMPTY_LOCK_GRACE_MS = 5_000;

/** Whether a process with this pid is running (EPERM: running, as another user). */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readPid(path: string): number | null | 'gone' {
  try {
    const text = readFileSync(path, 'utf8').trim();
    return text === '' ? null : Number(text);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    throw err;
  }
}

/**
 * Breaks the lock at `path` if it is still the stale one (holder `stalePid`): moved aside first,
 * then checked, and put back if someone else took the lock in between.
 */
function breakStale(path: string, stalePid: number | null): void {
  const aside = `${path}.stale-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  try {
    renameSync(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const now = readPid(aside);
  if (now !== 'gone' && now !== stalePid) {
    // Not the lock we judged stale: give it back (link never replaces a newer lock).
    try {
      linkSync(aside, path);
    } catch {
      /* a newer lock is there already */
    }
  }
  try {
    unlinkSync(aside);
  } catch {
    /* already gone */
  }
}

/** One attempt: true when the lock is now ours. Breaks a stale lock (the next attempt takes it). */
function tryAcquire(path: string, ownPidIsStale: boolean): { ok: true } | { ok: false; holder: number | null } {
  try {
    const fd = openSync(path, 'wx');
    try {
      writeSync(fd, `${process.pid}\n`);
    } finally {
      closeSync(fd);
    }
    return { ok: true };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const holder = readPid(path);
  if (holder === 'gone') return { ok: false, holder: null };
  if (holder === null) {
    let age = 0;
    try {
      age = Date.now() - statSync(path).mtimeMs;
    } catch {
      return { ok: false, holder: null };
    }
    if (age > EMPTY_LOCK_GRACE_MS) breakStale(path, null);
    return { ok: false, holder: null };
  }
  const mine = holder === process.pid;
  if ((mine && ownPidIsStale) || (!mine && !processAlive(holder))) breakStale(path, holder);
  return { ok: false, holder };
}

function release(path: string): void {
  try {
    if (readPid(path) === process.pid) unlinkSync(path);
  } catch {
    /* gone already */
  }
}

function timeoutError(path: string, o: LockOptions, holder: number | null): Error {
  return new Error(
    `${o.what ?? path} is locked by another process${holder ? ` (pid ${holder})` : ''}; waited ${Math.round((o.timeoutMs ?? 30_000) / 1000)} s. If no catdog process is running, delete ${path}.`,
  );
}

const inProcess = new Map<string, Promise<unknown>>();

/** Runs `fn` holding the lock file `path` (and, inside this process, one caller at a time). */
export async function withFileLock<T>(path: string, fn: () => Promise<T>, o: LockOptions = {}): Promise<T> {
  const prev = inProcess.get(path) ?? Promise.resolve();
  const run = async (): Promise<T> => {
    const deadline = Date.now() + (o.timeoutMs ?? 30_000);
    for (let attempt = 0; ; attempt++) {
      // Inside the process callers are serialised, so a lock with our own pid is a leftover.
      const r = tryAcquire(path, true);
      if (r.ok) break;
      if (Date.now() > deadline) throw timeoutError(path, o, r.holder);
      await new Promise((resolve) => setTimeout(resolve, Math.min(5 + attempt * 5, 50)));
    }
    try {
      return await fn();
    } finally {
      release(path);
    }
  };
  const next = prev.then(run, run);
  const tail = next.catch(() => undefined);
  inProcess.set(path, tail);
  try {
    return await next;
  } finally {
    if (inProcess.get(path) === tail) inProcess.delete(path);
  }
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** The synchronous flavour, for short critical sections (no await inside `fn`). */
export function withFileLockSync<T>(path: string, fn: () => T, o: LockOptions = {}): T {
  const deadline = Date.now() + (o.timeoutMs ?? 30_000);
  for (let attempt = 0; ; attempt++) {
    // Synchronous sections never overlap inside a process: our own pid is a leftover.
    const r = tryAcquire(path, true);
    if (r.ok) break;
    if (Date.now() > deadline) throw timeoutError(path, o, r.holder);
    Atomics.wait(sleeper, 0, 0, Math.min(1 + attempt, 20));
  }
  try {
    return fn();
  } finally {
    release(path);
  }
}
