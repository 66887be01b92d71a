/** The bounded classifier queue and the shutdown gate, on their own. */
import { describe, expect, it } from 'vitest';
import { Busy, ShuttingDown } from '../../src/errors.ts';
import { ClassifyQueue, WorkGate } from '../../src/queue.ts';

describe('ClassifyQueue', () => {
  /** A job that runs until released. */
  function job() {
    let release!: () => void;
    let started = false;
    const gate = new Promise<void>((r) => (release = r));
    return {
      fn: async () => {
        started = true;
        await gate;
        return 'done';
      },
      release,
      get started() {
        return started;
      },
    };
  }

  it('caps concurrency, keeps a fixed number of waiting places, and refuses the rest as Busy', async () => {
    const q = new ClassifyQueue({ size: 1, concurrency: 1, perKey: 1 });
    const a = job();
    const b = job();
    const pa = q.run('g1', a.fn);
    const pb = q.run('g2', b.fn);
    expect(q.stats()).toEqual({ waiting: 1, running: 1, size: 1, concurrency: 1 });
    expect(q.wouldRefuse('g3')).toBe(true);
    await expect(q.run('g3', async () => 'x')).rejects.toBeInstanceOf(Busy);
    expect(a.started).toBe(true);
    expect(b.started).toBe(false);
    a.release();
    expect(await pa).toBe('done');
    b.release();
    expect(await pb).toBe('done');
    await q.idle();
    expect(q.stats()).toEqual({ waiting: 0, running: 0, size: 1, concurrency: 1 });
  });

  it('does not let one busy guild hold back another', async () => {
    const q = new ClassifyQueue({ size: 10, concurrency: 2, perKey: 1 });
    const a1 = job();
    const a2 = job();
    const b1 = job();
    const p = [q.run('busy', a1.fn), q.run('busy', a2.fn), q.run('other', b1.fn)];
    // 'busy' has its one slot; its second job waits, and 'other' runs in the free slot.
    expect(a1.started).toBe(true);
    expect(a2.started).toBe(false);
    await Promise.resolve();
    expect(b1.started).toBe(true);
    a1.release();
    await p[0];
    expect(a2.started).toBe(true);
    a2.release();
    b1.release();
    await Promise.all(p);
  });

  it('drops a waiting job whose signal aborts, and refuses new work after close() while finishing the rest', async () => {
    const q = new ClassifyQueue({ size: 5, concurrency: 1, perKey: 5 });
    const a = job();
    const pa = q.run('k', a.fn);
    const ctrl = new AbortController();
    const waiting = q.run('k', async () => 'never', ctrl.signal);
    ctrl.abort(new Error('user left'));
    await expect(waiting).rejects.toThrow('user left');
    expect(q.stats().waiting).toBe(0);
    q.close();
    await expect(q.run('k', async () => 'x')).rejects.toBeInstanceOf(ShuttingDown);
    const idle = q.idle();
    a.release();
    await idle;
    expect(await pa).toBe('done');
  });

  it('WorkGate waits for work in flight and refuses new work once closed', async () => {
    const gate = new WorkGate();
    const leave = gate.enter();
    let closed = false;
    const closing = gate.close().then(() => (closed = true));
    expect(() => gate.enter()).toThrow(ShuttingDown);
    await Promise.resolve();
    expect(closed).toBe(false);
    leave();
    await closing;
    expect(closed).toBe(true);
  });
});
