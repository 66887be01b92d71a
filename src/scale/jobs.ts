/**
 * Jobs across machines: /retrain and /score as BullMQ jobs on `catdog-jobs`, run by the jobs
 * worker (CATDOG_ROLE=jobs) at concurrency 1, under the same job runner and records as the
 * embedded mode (src/jobs/runner.ts; records in Redis, ids from INCR).
 *
 * - One job at a time in the whole deployment: `catdog:jobs:current` (SET NX) holds the id.
 * - The door creates the record (queued), enqueues it, posts the job's message and tells where it
 *   is (`catdog:job-message:<id>`); from then on ONE notifier, the jobs worker, edits that channel
 *   message (not the interaction's token, which expires after 15 minutes): progress at most every
 *   progressIntervalMs, then the result with its files (they are on the jobs machine).
 * - Cancel: BullMQ cannot cancel an active job from the queue (bullmq#3768). A waiting job is
 *   removed; an active one gets a Redis flag (`catdog:job-cancel:<id>`) and a message on the
 *   `catdog:job-cancel` channel; the worker that runs it aborts its signal and the work stops within
 *   one batch. A job handed over again after its worker died checks the flag before starting.
 * - A killed jobs worker: its job's lock expires and the queue hands the job to the next jobs
 *   worker (the same one restarted, or another), which runs it again under the same record
 *   (attempt 2), reusing the feature cache; the active model is never touched by a retrain.
 */
import { hostname } from 'node:os';
import { Queue, QueueEvents, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { REST, Routes } from 'discord.js';
import { finalPayload, progressPayload, type MessagePayload } from '../bot/job-message.ts';
import type { AdminServices, Log } from '../bot/services.ts';
import { Throttle } from '../bot/throttle.ts';
import type { Config, Env } from '../config.ts';
import type { LiveHead, Models } from '../jobs/models.ts';
import { JobBusy, JobDataMissing, JobRunner, JobStateError, type Jobs, type JobsWorkerStatus, type JobWatcher, type StartedJob } from '../jobs/runner.ts';
import { jobDataProblems } from '../jobs/data.ts';
import { type JobDecision, type JobKind, type JobRecord, type JobRequest, type JobStatus, type JobUser, newJobRecord } from '../jobs/types.ts';
import { Registry } from '../model/registry.ts';
import { Store } from '../store/index.ts';
import { blockingConnection, JOBS_QUEUE, JOBS_WORKER_KEY_PREFIX, producerConnection } from './connections.ts';
import { ModelProcess } from './embedded.ts';
import { liveBeats, RedisLiveHead } from './heads.ts';
import { startModelsWorker } from './models.ts';
import type { RunningRole } from './inference-worker.ts';

const CURRENT = 'catdog:jobs:current';
const CANCEL_CHANNEL = 'catdog:job-cancel';
const cancelKey = (id: string) => `catdog:job-cancel:${id}`;
const messageKey = (id: string) => `catdog:job-message:${id}`;
const bullKey = (id: string) => `catdog:job-bull:${id}`;
const DAY_MS = 24 * 3600_000;
const FINISHED: ReadonlySet<JobStatus> = new Set(['succeeded', 'failed', 'cancelled', 'interrupted']);

interface JobData {
  recordId: string;
}

const BEAT_MS = 2000;

/** A jobs worker's heartbeat in Redis (`catdog:jobs-worker:<name>`, expires when it dies). */
interface JobsWorkerBeat extends JobsWorkerStatus {
  pid: number;
  sources: string[];
  at: string;
}

const DATA_WORDS: Record<JobKind, { data: string; job: string; fix: string }> = {
  retrain: { data: 'training data', job: 'a retrain', fix: 'TRAIN_DATA' },
  score: { data: 'test data', job: 'a scoring run', fix: 'TEST_DATA, TEST_LABELS' },
};

/** What stops a job of `kind` on a jobs worker (an older worker's heartbeat may not say it for /score). */
const problemsOf = (w: JobsWorkerStatus, kind: JobKind): string[] => (kind === 'retrain' ? w.trainDataProblems : (w.testDataProblems ?? []));

/**
 * Why the job asked for would fail on every live jobs worker, with their own data, or null when
 * one can run it (or none is alive yet: the job waits for one). The same for /retrain and /score.
 */
function dataRefusal(request: JobRequest, workers: JobsWorkerStatus[]): string | null {
  const named = request.kind === 'retrain' ? request.sources !== undefined : request.source !== undefined;
  if (named || !workers.length || workers.some((w) => !problemsOf(w, request.kind).length)) return null;
  const w = workers[0]!;
  const words = DATA_WORDS[request.kind];
  const more = workers.length > 1;
  return `The jobs worker${more ? 's' : ''} cannot use ${more ? 'their' : 'its'} ${words.data}, so ${words.job} would fail: ${problemsOf(w, request.kind).join('; ')} (${words.fix} on ${w.host}, ${w.name}). Nothing was started; fix ${words.fix} on the jobs machine (it is checked every few seconds) and try again.`;
}

/** The doors' side: the Jobs the commands use, on the jobs queue. */
export class QueuedJobs implements Jobs {
  constructor(
    private readonly store: Store,
    private readonly redis: Redis,
    private readonly queue: Queue<JobData>,
    private readonly events: QueueEvents,
    private readonly log: Log,
  ) {}

  async current(): Promise<JobRecord | null> {
    const id = await this.redis.get(CURRENT);
    if (!id || id === 'starting') return null;
    const r = await this.store.jobs.get(id);
    return r && !FINISHED.has(r.status) ? r : null;
  }

  recent(limit?: number): Promise<JobRecord[]> {
    return this.store.jobs.recent(limit);
  }

  get(id: string): Promise<JobRecord | null> {
    return this.store.jobs.get(id);
  }

  decide(id: string, decision: JobDecision): Promise<JobRecord | null> {
    return this.store.jobs.update(id, { decision });
  }

  /** Takes the one-job slot, or throws JobBusy with the job that holds it. */
  private async claim(): Promise<void> {
    if ((await this.redis.set(CURRENT, 'starting', 'PX', 60_000, 'NX')) === 'OK') return;
    const running = await this.current();
    if (running) throw new JobBusy(running);
    // The slot names a job that has ended (its worker died before clearing it): take it over.
    const held = await this.redis.get(CURRENT);
    if (held === 'starting') throw new JobBusy(null);
    if (
      held &&
      (await this.redis.eval(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[1], 'starting', 'PX', 60000) end return false",
        1,
        CURRENT,
        held,
      ))
    )
      return;
    throw new JobBusy(null);
  }

  private async enqueue(record: JobRecord): Promise<StartedJob> {
    const bullId = `job-${record.id}-${record.attempts + 1}`;
    try {
      await this.redis.set(CURRENT, record.id);
      await this.redis.set(bullKey(record.id), bullId, 'PX', DAY_MS * 7);
      const job = await this.queue.add(
        record.kind,
        { recordId: record.id },
        { jobId: bullId, attempts: 1, removeOnComplete: { age: 7 * 24 * 3600 }, removeOnFail: { age: 7 * 24 * 3600 } },
      );
      const done = job
        .waitUntilFinished(this.events)
        .catch(() => undefined)
        .then(async () => (await this.store.jobs.get(record.id)) ?? record);
      return { record, done };
    } catch (err) {
      await this.redis.del(CURRENT).catch(() => undefined);
      throw err;
    }
  }

  async workers(): Promise<JobsWorkerStatus[]> {
    return (await liveBeats<JobsWorkerBeat>(this.redis, JOBS_WORKER_KEY_PREFIX)).map((b) => ({
      name: b.name,
      host: b.host,
      trainDataProblems: b.trainDataProblems,
      testDataProblems: b.testDataProblems ?? [],
    }));
  }

  /** Queues what was asked; the jobs worker fills in its own data (this door needs no TRAIN_DATA or TEST_DATA). */
  async start(request: JobRequest, by: JobUser, _watch?: JobWatcher): Promise<StartedJob> {
    // Refused here, at once, rather than as a failed job after the queue hop.
    const refusal = dataRefusal(request, await this.workers());
    if (refusal) throw new JobDataMissing(refusal);
    await this.claim();
    let record: JobRecord;
    try {
      record = await this.store.jobs.create(newJobRecord(request, by));
    } catch (err) {
      await this.redis.del(CURRENT).catch(() => undefined);
      throw err;
    }
    this.log(`jobs: #${record.id} (${record.kind}) queued by ${by.name}`);
    return this.enqueue(record);
  }

  async resume(id: string, by: JobUser, _watch?: JobWatcher): Promise<StartedJob> {
    const record = await this.store.jobs.get(id);
    if (!record) throw new JobStateError('job_unknown', `There is no job #${id}.`);
    if (record.status !== 'interrupted')
      throw new JobStateError('job_not_resumable', `Job #${id} is ${record.status}; only an interrupted job can be resumed.`);
    await this.claim();
    await this.redis.del(cancelKey(id));
    this.log(`jobs: #${id} (${record.kind}) resumed by ${by.name}`);
    return this.enqueue(record);
  }

  async cancel(id: string, by: JobUser): Promise<boolean> {
    const record = await this.store.jobs.get(id);
    if (!record || FINISHED.has(record.status)) return false;
    await this.redis.set(cancelKey(id), JSON.stringify(by), 'PX', DAY_MS);
    const bullId = await this.redis.get(bullKey(id));
    const job = bullId ? await this.queue.getJob(bullId) : undefined;
    const state = job ? await job.getState() : 'unknown';
    if (job && (state === 'waiting' || state === 'delayed' || state === 'prioritized')) {
      // Not started: take it off the queue and record it here.
      await job.remove().catch(() => undefined);
      await this.store.jobs.update(id, { status: 'cancelled', cancelledBy: by, endedAt: new Date().toISOString() });
      await this.redis.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0", 1, CURRENT, id);
    }
    // Running: the worker that owns it aborts (and a notifier shows a job cancelled while waiting).
    await this.redis.publish(CANCEL_CHANNEL, id);
    this.log(`jobs: #${id} (${record.kind}) cancelled by ${by.name}${state === 'active' ? ' (the jobs worker stops it)' : ''}`);
    return true;
  }

  async shutdown(): Promise<void> {
    await this.events.close().catch(() => undefined);
    await this.queue.close().catch(() => undefined);
  }
}

/**
 * The admin services of a distributed door: jobs on the jobs queue, model operations on the
 * models queue (both run by the jobs worker, where the registry and the training data are: the
 * door needs neither on its machine).
 */
export async function distributedAdmin(o: { config: Config; store: Store; redis: Redis; models: Models; log: Log }): Promise<AdminServices> {
  const url = o.config.scale.redisUrl!;
  const queue = new Queue<JobData>(JOBS_QUEUE, { connection: producerConnection(url) });
  queue.on('error', () => undefined);
  const events = new QueueEvents(JOBS_QUEUE, { connection: blockingConnection(url) });
  events.on('error', () => undefined);
  await queue.waitUntilReady();
  return {
    jobs: new QueuedJobs(o.store, o.redis, queue, events, o.log),
    models: o.models,
    progressIntervalMs: o.config.scale.jobProgressMs,
    tokenTtlMs: 14 * 60_000,
    background: new Set(),
    jobMessages: {
      attach: async (jobId, message) => {
        await o.redis.set(messageKey(jobId), JSON.stringify(message), 'PX', DAY_MS * 7);
      },
    },
  };
}

/** Edits a job's channel message through REST with the bot's token (the jobs worker holds no gateway connection). */
class ChannelNotifier {
  private ref: { channelId: string; messageId: string } | null = null;
  private readonly throttle: Throttle<MessagePayload>;

  constructor(
    private readonly rest: REST,
    private readonly redis: Redis,
    private readonly jobId: string,
    intervalMs: number,
    private readonly log: Log,
  ) {
    this.throttle = new Throttle(
      intervalMs,
      (p) => this.send(p),
      (err) => log(`jobs: could not update the message of #${jobId}: ${err instanceof Error ? err.message : String(err)}`),
    );
  }

  progress(r: JobRecord): void {
    if (r.status === 'running') this.throttle.push(progressPayload(r));
  }

  async final(r: JobRecord): Promise<void> {
    try {
      await this.throttle.final(await finalPayload(r));
    } catch (err) {
      this.log(`jobs: could not post the end of #${this.jobId}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private async where(wait: boolean): Promise<{ channelId: string; messageId: string } | null> {
    for (let i = 0; !this.ref; i++) {
      const v = await this.redis.get(messageKey(this.jobId));
      if (v) this.ref = JSON.parse(v);
      else if (!wait || i >= 150) return null;
      else await new Promise((r) => setTimeout(r, 100));
    }
    return this.ref;
  }

  private async send(p: MessagePayload): Promise<void> {
    const ref = await this.where(true);
    if (!ref) return;
    const files = (p.files ?? []).map((f) => ({ name: f.name ?? 'file', data: f.attachment as Buffer }));
    await this.rest.patch(Routes.channelMessage(ref.channelId, ref.messageId), {
      body: {
        ...(p.content !== undefined ? { content: p.content } : {}),
        embeds: p.embeds,
        components: p.components.map((c) => c.toJSON()),
        ...(files.length ? { attachments: files.map((f, i) => ({ id: i, filename: f.name })) } : {}),
      },
      files,
    });
  }
}

/** CATDOG_ROLE=jobs: the jobs worker (concurrency 1) and the notifier of the jobs' messages. */
export async function startJobsWorker(config: Config, env: Env, log: Log, o: { progressIntervalMs?: number } = {}): Promise<RunningRole> {
  const url = config.scale.redisUrl!;
  const model = await ModelProcess.start(env, log);
  const store = await Store.open(config.store, log);
  const redis = blockingConnection(url);
  const sub = blockingConnection(url);
  const runner = new JobRunner({ repo: store.jobs, work: model.jobWork, data: config.data, log });
  const rest = new REST(config.discord.apiUrl ? { api: config.discord.apiUrl } : {}).setToken(config.discord.token ?? '');
  const interval = o.progressIntervalMs ?? config.scale.jobProgressMs;
  const clearCurrent = (id: string) =>
    redis.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0", 1, CURRENT, id).catch(() => undefined);

  sub.on('message', (_channel: string, id: string) => {
    void (async () => {
      const by = await redis.get(cancelKey(id));
      if (!by) return;
      if (runner.current()?.id === id) {
        runner.cancel(id, JSON.parse(by) as JobUser);
        return;
      }
      // Cancelled while it waited: the door recorded it; show it on the job's message.
      const r = await store.jobs.get(id);
      if (r?.status === 'cancelled') await new ChannelNotifier(rest, redis, id, 0, log).final(r);
    })().catch((err) => log(`jobs: cancel of #${id}: ${err instanceof Error ? err.message : String(err)}`));
  });
  await sub.subscribe(CANCEL_CHANNEL);

  // Whether this machine can read TRAIN_DATA and TEST_DATA: said at startup, in Redis for the doors
  // (a /retrain or /score that would fail is refused at once, /model shows it), checked every few seconds.
  const name = `jobs@${hostname()}:${process.pid}`;
  const said: Record<JobKind, string | null> = { retrain: null, score: null };
  const check = (kind: JobKind, command: string, vars: string): string[] => {
    const problems = jobDataProblems({ kind }, config.data);
    const now = problems.join('; ');
    if (now !== said[kind]) {
      if (problems.length) log(`jobs: warning: ${command} will fail on this machine: ${now} (${vars})`);
      else if (said[kind] !== null) log(`jobs: the ${DATA_WORDS[kind].data} can be read now (${vars})`);
      said[kind] = now;
    }
    return problems;
  };
  const beat = async () => {
    const b: JobsWorkerBeat = {
      name,
      host: hostname(),
      pid: process.pid,
      sources: config.data.train,
      trainDataProblems: check('retrain', '/retrain', 'TRAIN_DATA'),
      testDataProblems: check('score', '/score', 'TEST_DATA, TEST_LABELS'),
      at: new Date().toISOString(),
    };
    await redis.set(`${JOBS_WORKER_KEY_PREFIX}${name}`, JSON.stringify(b), 'PX', BEAT_MS * 5).catch(() => undefined);
  };
  await beat();
  const beats = setInterval(() => void beat().catch(() => undefined), BEAT_MS);

  const worker = new Worker<JobData>(
    JOBS_QUEUE,
    async (job: Job<JobData>) => {
      const id = job.data.recordId;
      const notifier = new ChannelNotifier(rest, redis, id, interval, log);
      const flag = await redis.get(cancelKey(id));
      if (flag) {
        // Cancelled before it (re)started here: it does not start.
        const r = await store.jobs.update(id, { status: 'cancelled', cancelledBy: JSON.parse(flag) as JobUser, endedAt: new Date().toISOString() });
        await clearCurrent(id);
        if (r) await notifier.final(r);
        return 'cancelled';
      }
      let started: StartedJob;
      try {
        started = await runner.run(id, (r) => {
          notifier.progress(r);
          if (r.progress) void job.updateProgress({ stage: r.progress.stage, done: r.progress.done, total: r.progress.total }).catch(() => undefined);
        });
      } catch (err) {
        const r = await store.jobs.update(id, { status: 'failed', error: err instanceof Error ? err.message : String(err), endedAt: new Date().toISOString() });
        await clearCurrent(id);
        if (r) await notifier.final(r);
        return 'failed';
      }
      notifier.progress(started.record);
      // A cancel that came while the job was being set up (before the runner knew its id).
      const late = await redis.get(cancelKey(id));
      if (late) runner.cancel(id, JSON.parse(late) as JobUser);
      const final = await started.done;
      // The slot is free once the record is final, before the message says so.
      await clearCurrent(id);
      await notifier.final(final);
      return final.status;
    },
    {
      connection: blockingConnection(url),
      concurrency: 1,
      name,
      lockDuration: config.scale.workerLockMs,
      stalledInterval: config.scale.workerLockMs,
      maxStalledCount: 1,
    },
  );
  worker.on('error', (err) => log(`jobs: queue error: ${err.message}`));
  worker.on('failed', (job, err) => {
    // Stalled too often (its workers keep dying): interrupted, resumable by a person.
    if (!job) return;
    const id = job.data.recordId;
    log(`jobs: #${id} given up by the queue: ${err.message}`);
    void store.jobs
      .update(id, (r) =>
        FINISHED.has(r.status) ? {} : { status: 'interrupted', error: 'The jobs worker stopped while this job ran.', endedAt: new Date().toISOString() },
      )
      .then(async (r) => {
        await clearCurrent(id);
        if (r) await new ChannelNotifier(rest, redis, id, 0, log).final(r);
      });
  });
  await worker.waitUntilReady();
  log(`jobs: the jobs worker takes ${JOBS_QUEUE} (one at a time), model process pid ${model.pid}`);

  // The registry is here: the gateways' /model and Promote/Discard run here (src/scale/models.ts).
  // A new head goes to every inference worker (Redis) and to this worker's own model process (/score).
  // With no inference worker alive and no head published, a promotion is checked against this worker's own backbones.
  const published = new RedisLiveHead(redis, { fallback: () => model.backbones });
  const live: LiveHead & { refresh(): Promise<void> } = {
    get backbones() {
      return published.backbones;
    },
    info: () => published.info(),
    answering: () => published.answering(),
    refresh: () => published.refresh(),
    async setHead(head) {
      await published.setHead(head);
      await model.setHead(head).then(
        () => log(`models: the jobs worker's model process now scores with ${model.info().model}`),
        (err) => log(`models: the jobs worker's model process keeps its head: ${err instanceof Error ? err.message : String(err)}`),
      );
    },
  };
  const modelsWorker = await startModelsWorker({ redisUrl: url, redis, registry: new Registry(config.model.registryDir), live, log });
  return {
    name: 'jobs',
    async close() {
      clearInterval(beats);
      await runner.shutdown(); // a running job stops within one batch and is recorded interrupted
      await modelsWorker.close();
      await worker.close();
      await redis.del(`${JOBS_WORKER_KEY_PREFIX}${name}`).catch(() => undefined);
      await sub.quit().catch(() => undefined);
      await redis.quit().catch(() => undefined);
      await store.close();
      await model.close();
    },
  };
}
