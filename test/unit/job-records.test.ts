/**
 * Issue #8, part 3: a job record that was written is always listed. A process killed in the
 * middle of creating a job (simulated: the k-th write of create() throws and nothing after it
 * runs) must leave a store where every stored record shows in recent() (so /jobs and recovery
 * see it), and the next job never overwrites an existing record.
 */
import Keyv from 'keyv';
import { describe, expect, it } from 'vitest';
import type { JobRecord } from '../../src/jobs/types.ts';
import { JobRepo } from '../../src/store/index.ts';

function draft(n: number): Omit<JobRecord, 'id'> {
  return {
    kind: 'retrain', status: 'queued', startedBy: { id: '1', name: `u${n}` }, params: { kind: 'retrain', sources: [] } as never,
    createdAt: new Date(0).toISOString(), startedAt: null, endedAt: null, attempts: 0, progress: null, result: null,
    error: null, cancelledBy: null, decision: null,
  };
}

/** Runs each update after the previous one (what the store's per-key mutex does, for one writer). */
function serial(): never {
  let tail: Promise<unknown> = Promise.resolve();
  return { run: <T>(_key: string, fn: () => Promise<T>) => { const next = tail.then(fn, fn); tail = next.catch(() => undefined); return next; } } as never;
}

describe('job records after a crash during creation', () => {
  for (let crashAt = 0; crashAt < 4; crashAt++) {
    it(`write #${crashAt + 1} of create() never happens: every stored record is listed, none is overwritten`, async () => {
      const map = new Map();
      const kv = new Keyv({ store: map });
      const repo = new JobRepo(kv, serial());
      for (let n = 1; n <= 3; n++) await repo.create(draft(n));

      // The "process" dies at its crashAt-th write: that write and everything after it never happen.
      let writes = 0;
      let dead = false;
      const realSet = kv.set.bind(kv);
      const realDelete = kv.delete.bind(kv);
      kv.set = (async (...args: Parameters<typeof realSet>) => {
        if (dead || writes++ === crashAt) {
          dead = true;
          throw new Error('killed');
        }
        return realSet(...args);
      }) as typeof kv.set;
      kv.delete = (async (...args: Parameters<typeof realDelete>) => {
        if (dead) throw new Error('killed');
        return realDelete(...args);
      }) as typeof kv.delete;
      await repo.create(draft(4)).catch(() => undefined);
      kv.set = realSet;
      kv.delete = realDelete;

      // The restart: a new repo on what is on disk.
      const after = new JobRepo(kv, serial());
      const stored: string[] = [];
      for (let id = 1; id <= 6; id++) if (await after.get(String(id))) stored.push(String(id));
      const listed = (await after.recent(100)).map((r) => r.id).sort();
      expect(listed).toEqual(stored.sort());
      const next = await after.create(draft(5));
      expect(stored).not.toContain(next.id);
      expect((await after.recent(100)).map((r) => r.id).sort()).toEqual([...stored, next.id].sort());
    });
  }
});
