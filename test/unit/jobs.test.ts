/**
 * The job runner (src/jobs/runner.ts) against a real store (SQLite in a temp folder) with work
 * written here — so each rule is checked alone: one job at a time, progress events and persisted
 * records, cancel, interrupted-at-startup and resume, shutdown; plus the progress throttle, who is
 * an admin, and which data a job needs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { isAdmin, type AdminCheckInput } from '../../src/bot/admin.ts';
import { Throttle } from '../../src/bot/throttle.ts';
import { loadConfig } from '../../src/config.ts';
import { JobBusy, JobDataMissing, JobRunner, type JobContext, type JobWork } from '../../src/jobs/runner.ts';
import type { JobParams, JobRecord, JobResult } from '../../src/jobs/types.ts';
import { jobParams } from '../../src/jobs/data.ts';
import { Store } from '../../src/store/index.ts';

const tmp = mkdtempSync(join(tmpdir(), 'catdog-jobs-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const alice = { id: '100000000000000001', name: 'alice' };
const bob = { id: '100000000000000002', name: 'bob' };
const RETRAIN: JobParams = { kind: 'retrain', sources: ['/data/train.zip'] };

/** Retries `check` until it passes (at most 2 s): for writes the runner makes in the background. */
async function eventually(check: () => Promise<void>): Promise<void> {
  const until = Date.now() + 2000;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

async function openStore(name = `s${++n}`): Promise<Store> {
  const path = join(tmp, `${name}.sqlite`);
  return Store.open({ kind: 'sqlite', url: `sqlite://${path}`, path });
}

const summary: JobResult = {
  kind: 'score',
  model: 'm-test',
  n: 3,
  unreadable: 0,
  msPerImage: 1,
  submissionCsv: '/x/submission.csv',
  logloss: null,
  accuracy: null,
  confusion: null,
  worstPng: null,
};

/** Work whose steps a test drives: each step reports progress and waits for step(); honours the signal. */
class SteppedWork implements JobWork {
  runs = 0;
  checks = 0;
  failWith: Error | null = null;
  private waiters: (() => void)[] = [];
  private arrived: (() => void)[] = [];
  constructor(private readonly steps: number) {}

  async check(params: JobParams): Promise<void> {
    this.checks++;
    if (params.kind === 'retrain' && params.sources.includes('/missing')) throw new JobDataMissing('The training data is not there: /missing (TRAIN_DATA).');
  }

  /** Resolves when the job waits at its next step. */
  atStep(): Promise<void> {
    return new Promise((r) => this.arrived.push(r));
  }

  step(): void {
    this.waiters.shift()?.();
  }

  async run(_params: JobParams, ctx: JobContext): Promise<JobResult> {
    this.runs++;
    for (let i = 0; i < this.steps; i++) {
      ctx.progress({ stage: 'extract', message: `features ${i}/${this.steps}`, done: i, total: this.steps, imgPerSec: 10, etaSec: this.steps - i });
      await new Promise<void>((resolve, reject) => {
        this.waiters.push(resolve);
        ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true });
        this.arrived.shift()?.();
      });
    }
    if (this.failWith) throw this.failWith;
    return summary;
  }
}

describe('JobRunner', () => {
  let store: Store;
  beforeEach(async () => {
    store = await openStore();
    return () => store.close();
  });

  it('runs one job at a time, reports progress, persists the record and its result', async () => {
    const work = new SteppedWork(2);
    const runner = new JobRunner({ repo: store.jobs, work, persistEveryMs: 0 });
    const seen: JobRecord[] = [];
    const waiting = work.atStep();
    const job = await runner.start(RETRAIN, alice, (r) => seen.push(r));
    expect(job.record).toMatchObject({ id: '1', kind: 'retrain', status: 'running', startedBy: alice, attempts: 1, params: RETRAIN });
    await waiting;
    // A second request is refused and told what runs.
    const busy = await runner.start({ kind: 'score', source: '/t', labels: null }, bob).catch((e: unknown) => e);
    expect(busy).toBeInstanceOf(JobBusy);
    expect((busy as JobBusy).running?.id).toBe('1');
    expect(work.checks).toBe(1); // refused before anything else
    expect(runner.current()?.progress).toMatchObject({ stage: 'extract', done: 0, total: 2 });
    await eventually(async () => expect((await store.jobs.get('1'))?.progress).toMatchObject({ done: 0, total: 2 }));
    const next = work.atStep();
    work.step();
    await next;
    work.step();
    const final = await job.done;
    expect(final).toMatchObject({ status: 'succeeded', result: summary, error: null });
    expect(final.endedAt).not.toBeNull();
    expect(await store.jobs.get('1')).toEqual(final);
    expect(seen.map((r) => r.status)).toEqual(['running', 'running', 'succeeded']);
    expect(runner.current()).toBeNull();
    // Free again: the next job gets the next id.
    const at2 = work.atStep();
    const second = await runner.start(RETRAIN, bob);
    expect(second.record.id).toBe('2');
    await at2;
    const at3 = work.atStep();
    work.step();
    await at3;
    work.step();
    await second.done;
    expect((await runner.recent(10)).map((r) => r.id)).toEqual(['2', '1']);
  });

  it('refuses a job whose data is missing at once, with no record', async () => {
    const work = new SteppedWork(1);
    const runner = new JobRunner({ repo: store.jobs, work });
    await expect(runner.start({ kind: 'retrain', sources: ['/missing'] }, alice)).rejects.toThrow(/not there: \/missing/);
    expect(await runner.recent()).toEqual([]);
    expect(runner.current()).toBeNull();
    expect(() => jobParams({ kind: 'retrain' }, { train: [], test: null, testLabels: null })).toThrow(/TRAIN_DATA/);
    expect(() => jobParams({ kind: 'score' }, { train: ['/a'], test: null, testLabels: null })).toThrow(/TEST_DATA/);
    expect(jobParams({ kind: 'score' }, { train: [], test: '/t.zip', testLabels: '/l.csv' })).toEqual({ kind: 'score', source: '/t.zip', labels: '/l.csv' });
  });

  it('cancels through the AbortSignal: the job ends cancelled, by whom', async () => {
    const work = new SteppedWork(3);
    const runner = new JobRunner({ repo: store.jobs, work });
    const at = work.atStep();
    const job = await runner.start(RETRAIN, alice);
    await at;
    expect(runner.cancel('99', bob)).toBe(false);
    expect(runner.cancel(job.record.id, bob)).toBe(true);
    const final = await job.done;
    expect(final).toMatchObject({ status: 'cancelled', cancelledBy: bob, result: null });
    expect(runner.cancel(job.record.id, bob)).toBe(false);
  });

  it('a failure is recorded with its words', async () => {
    const work = new SteppedWork(1);
    work.failWith = new JobDataMissing('The photos went away.');
    const runner = new JobRunner({ repo: store.jobs, work });
    const at = work.atStep();
    const job = await runner.start(RETRAIN, alice);
    await at;
    work.step();
    expect(await job.done).toMatchObject({ status: 'failed', error: 'The photos went away.' });
  });

  it('a record left running by a dead process is interrupted at startup, and resume completes it under the same id', async () => {
    const path = join(tmp, 'crash.sqlite');
    // The first process: a job reaches its second step, then the process "dies" (the store is
    // simply closed under it; the runner never gets to write an ending).
    const s1 = await Store.open({ kind: 'sqlite', url: `sqlite://${path}`, path });
    const w1 = new SteppedWork(3);
    const r1 = new JobRunner({ repo: s1.jobs, work: w1, persistEveryMs: 0 });
    const at = w1.atStep();
    const job = await r1.start(RETRAIN, alice);
    await at;
    const at2 = w1.atStep();
    w1.step();
    await at2;
    await eventually(async () => expect((await s1.jobs.get(job.record.id))?.progress).toMatchObject({ done: 1 }));
    expect((await s1.jobs.get(job.record.id))?.status).toBe('running');
    await s1.close();

    // The next process.
    const s2 = await Store.open({ kind: 'sqlite', url: `sqlite://${path}`, path });
    try {
      const w2 = new SteppedWork(1);
      const r2 = new JobRunner({ repo: s2.jobs, work: w2 });
      const interrupted = await r2.recover();
      expect(interrupted.map((r) => [r.id, r.status])).toEqual([[job.record.id, 'interrupted']]);
      expect(interrupted[0]!.progress).toMatchObject({ done: 1, total: 3 });
      expect(await r2.recover()).toEqual([]); // once
      await expect(r2.resume('42', bob)).rejects.toThrow(/no job #42/);
      const at3 = w2.atStep();
      const resumed = await r2.resume(job.record.id, bob);
      expect(resumed.record).toMatchObject({ id: job.record.id, status: 'running', attempts: 2, startedBy: alice });
      await at3;
      w2.step();
      expect(await resumed.done).toMatchObject({ id: job.record.id, status: 'succeeded', attempts: 2 });
      await expect(r2.resume(job.record.id, bob)).rejects.toThrow(/succeeded; only an interrupted job/);
    } finally {
      await s2.close();
    }
  });

  it('shutdown stops the running job as interrupted (resumable)', async () => {
    const work = new SteppedWork(3);
    const runner = new JobRunner({ repo: store.jobs, work });
    const at = work.atStep();
    const job = await runner.start(RETRAIN, alice);
    await at;
    await runner.shutdown();
    expect(await job.done).toMatchObject({ status: 'interrupted' });
    expect((await store.jobs.get(job.record.id))?.status).toBe('interrupted');
  });

  it('keeps the last KEEP_JOBS records', async () => {
    const base = { kind: 'score' as const, status: 'succeeded' as const, startedBy: alice, params: { kind: 'score' as const, source: '/t', labels: null }, createdAt: '', startedAt: null, endedAt: null, attempts: 1, progress: null, result: null, error: null, cancelledBy: null, decision: null };
    for (let i = 0; i < 103; i++) await store.jobs.create(base);
    const recent = await store.jobs.recent(1000);
    expect(recent).toHaveLength(100);
    expect(recent[0]!.id).toBe('103');
    expect(await store.jobs.get('3')).toBeNull();
    expect(await store.jobs.get('4')).not.toBeNull();
  });
});

describe('Throttle', () => {
  it('sends the first value at once, then at most one per interval (the newest), and always the final one', async () => {
    // The throttle's own clock, driven by the test: what is checked is when it decides to send.
    vi.useFakeTimers();
    try {
      const sent: { v: number; t: number }[] = [];
      const th = new Throttle<number>(
        200,
        async (v) => {
          sent.push({ v, t: Date.now() });
        },
        undefined,
        () => Date.now(),
      );
      const t0 = Date.now();
      for (let i = 1; i <= 5; i++) {
        th.push(i);
        await vi.advanceTimersByTimeAsync(60);
      }
      const ended = th.final(99);
      await vi.runAllTimersAsync();
      await ended;
      const values = sent.map((s) => s.v);
      expect(values[0]).toBe(1);
      expect(sent[0]!.t).toBe(t0); // at once
      expect(values.at(-1)).toBe(99);
      expect(values.length).toBeGreaterThanOrEqual(3); // at least one intermediate edit
      expect(values.length).toBeLessThan(7); // collapsed
      expect(values.slice(1, -1)).toEqual([4]); // the newest value at t0 + 200 (pushed at 180)
      for (let i = 1; i < sent.length; i++) expect(sent[i]!.t - sent[i - 1]!.t).toBeGreaterThanOrEqual(200);
      th.push(100); // after final: ignored
      await vi.advanceTimersByTimeAsync(250);
      expect(sent.at(-1)!.v).toBe(99);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('who is an admin', () => {
  const HOME = '500000000000000001';
  const OTHER = '500000000000000002';
  const who = (o: Partial<AdminCheckInput>): AdminCheckInput => ({ userId: '3', guildId: HOME, roleIds: [], administrator: false, ...o });
  it('the owner and ADMIN_USER_IDS anywhere; Administrator only in the home server, never elsewhere', () => {
    const policy = { ownerIds: ['42'], userIds: ['111111111111'], roleIds: [], homeGuildId: HOME };
    expect(isAdmin(who({ userId: '42', guildId: OTHER }), policy)).toBe(true);
    expect(isAdmin(who({ userId: '42', guildId: null }), policy)).toBe(true);
    expect(isAdmin(who({ userId: '111111111111', guildId: OTHER }), policy)).toBe(true);
    expect(isAdmin(who({ administrator: true }), policy)).toBe(true);
    expect(isAdmin(who({ administrator: true, guildId: OTHER }), policy)).toBe(false);
    expect(isAdmin(who({ administrator: true, guildId: null }), policy)).toBe(false);
  });
  it('ADMIN_ROLE_IDS count in the home server only, and then Administrator alone is not enough', () => {
    const config = loadConfig({ ADMIN_USER_IDS: '111111111111', ADMIN_ROLE_IDS: '222222222222', DISCORD_GUILD_ID: HOME });
    const policy = { ownerIds: [], ...config.admins, homeGuildId: config.discord.guildId };
    expect(isAdmin(who({ userId: '111111111111' }), policy)).toBe(true);
    expect(isAdmin(who({ roleIds: ['222222222222'] }), policy)).toBe(true);
    expect(isAdmin(who({ roleIds: ['222222222222'], guildId: OTHER }), policy)).toBe(false);
    expect(isAdmin(who({ roleIds: ['9'], administrator: true }), policy)).toBe(false);
  });
  it('without a home server no role or permission makes an admin', () => {
    const policy = { ownerIds: [], userIds: [], roleIds: [], homeGuildId: null };
    expect(isAdmin(who({ administrator: true, guildId: OTHER }), policy)).toBe(false);
  });
});
