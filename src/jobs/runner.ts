/**
 * The one job runner, for every door (Discord today): heavy jobs — a retrain or a scoring run —
 * one at a time, with progress as events, cancellation through an AbortSignal, and a record of
 * each job in the store (who started it, its status, progress, result summary, timestamps).
 *
 * - A second request while a job runs is refused with JobBusy, which carries the running job.
 * - At startup, recover() turns records still 'running' (or 'queued') into 'interrupted': the
 *   process that ran them died. resume() reruns such a job under the same record; the feature
 *   cache makes it pick up where it stopped, and the active model was never touched (a retrain
 *   only adds a model to the registry).
 * - shutdown() (SIGTERM) aborts the running job; it ends 'interrupted', resumable the same way.
 *
 * What a job does is given as JobWork (src/jobs/work.ts for the real pipeline), so the runner
 * knows nothing of training, Discord or ONNX.
 */
import { CatdogError } from '../errors.ts';
import {
  type JobDecision,
  type JobParams,
  type JobProgress,
  type JobRecord,
  type JobRepository,
  type JobRequest,
  type JobResult,
  type JobUser,
  newJobRecord,
} from './types.ts';
import { type JobData, jobParams } from './data.ts';

/** Another job is running; `running` is its record (null while it is still being set up). */
export class JobBusy extends CatdogError {
  constructor(readonly running: JobRecord | null) {
    super('job_busy', running ? `Job #${running.id} (${running.kind}) is running; one heavy job runs at a time.` : 'Another job is starting; one heavy job runs at a time.');
  }
}

export { JobDataMissing } from './data.ts';

/** No such job, or not in a state that allows what was asked. */
export class JobStateError extends CatdogError {
  constructor(code: 'job_unknown' | 'job_not_resumable' | 'job_not_running', message: string) {
    super(code, message);
  }
}

/** Abort reasons: a person cancelled, or the process is stopping. */
class CancelledBy extends Error {
  constructor(readonly by: JobUser) {
    super(`cancelled by ${by.name}`);
  }
}
class Stopping extends Error {
  constructor() {
    super('the process is stopping');
  }
}

export type ProgressUpdate = Omit<JobProgress, 'at' | 'done' | 'total' | 'imgPerSec' | 'etaSec' | 'cached'> &
  Partial<Pick<JobProgress, 'done' | 'total' | 'imgPerSec' | 'etaSec' | 'cached'>>;

export interface JobContext {
  /** The job's record as it started (id: a folder name for its outputs). */
  record: JobRecord;
  signal: AbortSignal;
  progress(p: ProgressUpdate): void;
}

export interface JobWork {
  /** Throws (JobDataMissing or another CatdogError) when the job cannot start, before any record is made. */
  check(params: JobParams): Promise<void>;
  run(params: JobParams, ctx: JobContext): Promise<JobResult>;
}

/** Called with the job's record on every progress event and once more when it ends. */
export type JobWatcher = (record: JobRecord) => void;

export interface StartedJob {
  record: JobRecord;
  /** Resolves with the final record (never rejects). */
  done: Promise<JobRecord>;
}

/**
 * What the doors use to run jobs: this process's JobRunner, or, distributed, the jobs queue in
 * front of the jobs worker (src/scale/jobs.ts).
 */
export interface Jobs {
  /** The job running now (its latest progress included), or null. */
  current(): JobRecord | null | Promise<JobRecord | null>;
  recent(limit?: number): Promise<JobRecord[]>;
  get(id: string): Promise<JobRecord | null>;
  /** Starts what a person asked for; the data they did not name is the jobs machine's own (resolved there). */
  start(request: JobRequest, by: JobUser, watch?: JobWatcher): Promise<StartedJob>;
  resume(id: string, by: JobUser, watch?: JobWatcher): Promise<StartedJob>;
  decide(id: string, decision: JobDecision): Promise<JobRecord | null>;
  /** Cancels the running (or waiting) job `id`; false when it is not running. */
  cancel(id: string, by: JobUser): boolean | Promise<boolean>;
  shutdown(): Promise<void>;
  /** Distributed: the jobs workers alive and what stops a retrain on each (empty: nothing). */
  workers?(): Promise<JobsWorkerStatus[]>;
}

export interface JobsWorkerStatus {
  name: string;
  host: string;
  /** Why a retrain would fail there (TRAIN_DATA missing, unreadable, not a zip); empty when it can read it all. */
  trainDataProblems: string[];
  /** Why a scoring run would fail there (TEST_DATA or TEST_LABELS missing, unreadable); empty when it can read them. */
  testDataProblems: string[];
}

export interface JobRunnerOptions {
  repo: JobRepository;
  work: JobWork;
  /** This machine's data (TRAIN_DATA, TEST_DATA, TEST_LABELS): what a job's request does not name. Default: none. */
  data?: JobData;
  log?: (line: string) => void;
  /** Progress is written to the store at most this often (and on every stage change). Default 2000 ms. */
  persistEveryMs?: number;
}

interface Slot {
  record: JobRecord | null;
  /** The job's parameters, resolved here. */
  params: JobParams | null;
  controller: AbortController;
  watchers: Set<JobWatcher>;
  done: Promise<JobRecord> | null;
}

export class JobRunner implements Jobs {
  private slot: Slot | null = null;
  private readonly log: (line: string) => void;

  constructor(private readonly o: JobRunnerOptions) {
    this.log = o.log ?? (() => {});
  }

  /** At startup: records left 'running' or 'queued' by a process that died become 'interrupted'. */
  async recover(): Promise<JobRecord[]> {
    const out: JobRecord[] = [];
    for (const r of await this.o.repo.recent(Number.MAX_SAFE_INTEGER)) {
      if (r.status !== 'running' && r.status !== 'queued') continue;
      if (this.slot?.record?.id === r.id) continue;
      const next = await this.o.repo.update(r.id, {
        status: 'interrupted',
        endedAt: r.progress?.at ?? new Date().toISOString(),
        error: 'The process stopped while this job ran.',
      });
      if (next) {
        out.push(next);
        this.log(`jobs: #${r.id} (${r.kind}, started by ${r.startedBy.name}) was ${r.status} when the process stopped; now interrupted (resumable)`);
      }
    }
    return out;
  }

  /** The job running now (its latest progress included), or null. */
  current(): JobRecord | null {
    return this.slot?.record ?? null;
  }

  recent(limit = 10): Promise<JobRecord[]> {
    return this.o.repo.recent(limit);
  }

  get(id: string): Promise<JobRecord | null> {
    return this.o.repo.get(id);
  }

  private resolve(request: JobRequest): JobParams {
    return jobParams(request, this.o.data ?? { train: [], test: null, testLabels: null });
  }

  /** Starts a job, or throws JobDataMissing (nothing configured) / JobBusy / the work's check error. */
  async start(request: JobRequest, by: JobUser, watch?: JobWatcher): Promise<StartedJob> {
    const params = this.resolve(request);
    const slot = this.claim(watch);
    try {
      await this.o.work.check(params);
      const record = await this.o.repo.create(newJobRecord(params, by));
      return this.launch(slot, record, params);
    } catch (err) {
      this.slot = null;
      throw err;
    }
  }

  /** Reruns an interrupted job under the same record (the feature cache keeps what was computed). */
  async resume(id: string, by: JobUser, watch?: JobWatcher): Promise<StartedJob> {
    const slot = this.claim(watch);
    try {
      const record = await this.o.repo.get(id);
      if (!record) throw new JobStateError('job_unknown', `There is no job #${id}.`);
      if (record.status !== 'interrupted') {
        throw new JobStateError('job_not_resumable', `Job #${id} is ${record.status}; only an interrupted job can be resumed.`);
      }
      const params = this.resolve(record.params);
      await this.o.work.check(params);
      this.log(`jobs: #${id} (${record.kind}) resumed by ${by.name}`);
      return this.launch(slot, record, params);
    } catch (err) {
      this.slot = null;
      throw err;
    }
  }

  /**
   * Runs a job whose record exists (created by a door of a distributed deployment, status
   * queued; or running/interrupted: its worker died and the queue hands it over again), under the
   * same record. What the record's request does not name is this machine's data (recorded in the
   * record when it starts). Throws JobBusy when a job runs here.
   */
  async run(id: string, watch?: JobWatcher): Promise<StartedJob> {
    const slot = this.claim(watch);
    try {
      const record = await this.o.repo.get(id);
      if (!record) throw new JobStateError('job_unknown', `There is no job #${id}.`);
      if (record.status !== 'queued' && record.status !== 'running' && record.status !== 'interrupted') {
        throw new JobStateError('job_not_resumable', `Job #${id} is ${record.status}; it does not run again.`);
      }
      const params = this.resolve(record.params);
      await this.o.work.check(params);
      if (record.status !== 'queued') this.log(`jobs: #${id} (${record.kind}) runs again (attempt ${record.attempts + 1})`);
      return await this.launch(slot, record, params);
    } catch (err) {
      this.slot = null;
      throw err;
    }
  }

  /** Records what became of a retrained model (promoted or discarded); null when the job is unknown. */
  decide(id: string, decision: JobDecision): Promise<JobRecord | null> {
    return this.o.repo.update(id, { decision });
  }

  /** Cancels the running job `id`; false when it is not the running one. */
  cancel(id: string, by: JobUser): boolean {
    const slot = this.slot;
    if (!slot?.record || slot.record.id !== id || slot.controller.signal.aborted) return false;
    this.log(`jobs: #${id} (${slot.record.kind}) cancelled by ${by.name}`);
    slot.controller.abort(new CancelledBy(by));
    return true;
  }

  /** Aborts the running job (it ends 'interrupted', resumable) and waits for it to settle. */
  async shutdown(): Promise<void> {
    const slot = this.slot;
    if (!slot) return;
    if (!slot.controller.signal.aborted) slot.controller.abort(new Stopping());
    await slot.done;
  }

  private claim(watch?: JobWatcher): Slot {
    if (this.slot) throw new JobBusy(this.slot.record);
    const slot: Slot = { record: null, params: null, controller: new AbortController(), watchers: new Set(watch ? [watch] : []), done: null };
    this.slot = slot;
    return slot;
  }

  private async launch(slot: Slot, record: JobRecord, params: JobParams): Promise<StartedJob> {
    slot.params = params;
    const running = await this.o.repo.update(record.id, (r) => ({
      status: 'running',
      params,
      startedAt: new Date().toISOString(),
      endedAt: null,
      attempts: r.attempts + 1,
      error: null,
      cancelledBy: null,
      result: null,
    }));
    slot.record = running!;
    this.log(`jobs: #${record.id} (${record.kind}) started by ${record.startedBy.name}`);
    slot.done = this.execute(slot);
    return { record: slot.record, done: slot.done };
  }

  private emit(slot: Slot): void {
    for (const w of slot.watchers) {
      try {
        w(slot.record!);
      } catch (err) {
        this.log(`jobs: a progress watcher failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }

  private async execute(slot: Slot): Promise<JobRecord> {
    const id = slot.record!.id;
    const every = this.o.persistEveryMs ?? 2000;
    let lastPersist = 0;
    let lastStage = '';
    let persisting: Promise<unknown> = Promise.resolve();
    const ctx: JobContext = {
      record: slot.record!,
      signal: slot.controller.signal,
      progress: (p) => {
        const progress: JobProgress = {
          done: null,
          total: null,
          imgPerSec: null,
          etaSec: null,
          cached: null,
          ...p,
          at: new Date().toISOString(),
        };
        slot.record = { ...slot.record!, progress };
        const now = performance.now();
        if (progress.stage !== lastStage || now - lastPersist >= every) {
          lastStage = progress.stage;
          lastPersist = now;
          persisting = persisting
            .then(() => this.o.repo.update(id, { progress }))
            .catch((err) => this.log(`jobs: could not save the progress of #${id}: ${String(err)}`));
        }
        this.emit(slot);
      },
    };
    let patch: Partial<JobRecord>;
    try {
      const result = await this.o.work.run(slot.params!, ctx);
      patch = { status: 'succeeded', result };
    } catch (err) {
      const reason: unknown = slot.controller.signal.aborted ? slot.controller.signal.reason : null;
      if (reason instanceof CancelledBy) patch = { status: 'cancelled', cancelledBy: reason.by, error: null };
      else if (reason instanceof Stopping) patch = { status: 'interrupted', error: 'The bot was restarting while this job ran.' };
      else {
        const words = err instanceof CatdogError ? err.message : `${err instanceof Error ? err.message : String(err)}`;
        if (!(err instanceof CatdogError)) this.log(`jobs: #${id} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
        patch = { status: 'failed', error: words };
      }
    }
    await persisting;
    const final = (await this.o.repo.update(id, { ...patch, progress: slot.record!.progress, endedAt: new Date().toISOString() })) ?? {
      ...slot.record!,
      ...patch,
    };
    slot.record = final;
    this.log(`jobs: #${id} (${final.kind}) ${final.status}${final.error ? `: ${final.error}` : ''}`);
    this.slot = null;
    this.emit(slot);
    return final;
  }
}
