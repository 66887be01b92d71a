/**
 * The model registry lives on the jobs machine (a retrain writes its new model there): the
 * gateways' model operations (/model show, list, rollback; Promote and Discard) are BullMQ jobs
 * on `catdog-models`, run one at a time by the jobs worker with its own registry, and the
 * gateway waits for the answer (a deadline: no jobs worker, a clear "try again"). So a gateway on
 * another machine needs no shared models folder, and two gateways never write the registry at
 * once. The head a promotion or rollback makes active is published in Redis
 * (src/scale/heads.ts) for every inference worker, and given to the jobs worker's own model
 * process (a /score after a promotion scores with the new model).
 *
 * Errors keep their code across (src/scale/wire.ts): "no previous model" reads the same as embedded.
 */
import { Queue, QueueEvents, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Log } from '../bot/services.ts';
import { CatdogError } from '../errors.ts';
import { type ActiveModels, type LiveHead, ModelAdmin, type ModelView, type Models } from '../jobs/models.ts';
import type { Registry } from '../model/registry.ts';
import { blockingConnection, MODELS_QUEUE, producerConnection } from './connections.ts';
import { publishHead } from './heads.ts';
import { fromWire, toWire, type WireError } from './wire.ts';

export type ModelOp = { op: 'active' } | { op: 'list' } | { op: 'promote'; id: string } | { op: 'rollback' } | { op: 'discard'; id: string };
type ModelReply = { ok: true; value: unknown } | { ok: false; error: WireError };

/** Longest a gateway waits for the jobs worker to run a model operation. */
const DEADLINE_MS = 30_000;

/** The gateways' side: each operation a job on `catdog-models`, answered by the jobs worker. */
export class QueuedModels implements Models {
  private constructor(
    private readonly queue: Queue<ModelOp, ModelReply>,
    private readonly events: QueueEvents,
    private readonly deadlineMs: number,
  ) {}

  static async open(redisUrl: string, o: { deadlineMs?: number } = {}): Promise<QueuedModels> {
    const queue = new Queue<ModelOp, ModelReply>(MODELS_QUEUE, { connection: producerConnection(redisUrl) });
    const events = new QueueEvents(MODELS_QUEUE, { connection: blockingConnection(redisUrl) });
    queue.on('error', () => undefined);
    events.on('error', () => undefined);
    await queue.waitUntilReady();
    await events.waitUntilReady();
    return new QueuedModels(queue, events, o.deadlineMs ?? DEADLINE_MS);
  }

  private async call<T>(op: ModelOp): Promise<T> {
    let job: Job<ModelOp, ModelReply>;
    try {
      job = await this.queue.add(op.op, op, { attempts: 1, removeOnComplete: { age: 60 }, removeOnFail: { age: 60 } });
    } catch (err) {
      throw new CatdogError('busy', "I can't reach my work queue right now. Please try again in a moment.", { cause: err });
    }
    const reply = (await job.waitUntilFinished(this.events, this.deadlineMs).catch(async (err: Error) => {
      if (/timed out before finishing/.test(err.message)) {
        await job.remove().catch(() => undefined); // still waiting: nobody runs it now
        throw new CatdogError(
          'busy',
          `No jobs worker answered within ${Math.round(this.deadlineMs / 1000)} s, and the model registry is kept by the jobs worker (CATDOG_ROLE=jobs). Please try again in a moment${op.op === 'promote' || op.op === 'rollback' ? '; `/model show` says whether the change was made' : ''}.`,
        );
      }
      throw err;
    })) as ModelReply;
    await job.remove().catch(() => undefined);
    if (!reply.ok) throw fromWire(reply.error);
    return reply.value as T;
  }

  active(): Promise<ActiveModels> {
    return this.call({ op: 'active' });
  }

  list(): Promise<ModelView[]> {
    return this.call({ op: 'list' });
  }

  promote(id: string): Promise<{ previous: string | null }> {
    return this.call({ op: 'promote', id });
  }

  rollback(): Promise<{ from: string | null; to: string }> {
    return this.call({ op: 'rollback' });
  }

  async discard(id: string): Promise<void> {
    await this.call({ op: 'discard', id });
  }

  async close(): Promise<void> {
    await this.events.close().catch(() => undefined);
    await this.queue.close().catch(() => undefined);
  }
}

function run(admin: ModelAdmin, op: ModelOp): Promise<unknown> {
  switch (op.op) {
    case 'active':
      return admin.active();
    case 'list':
      return admin.list();
    case 'promote':
      return admin.promote(op.id);
    case 'rollback':
      return admin.rollback();
    case 'discard':
      return admin.discard(op.id).then(() => null);
  }
}

/**
 * The jobs worker's side: runs the operations on its registry (one at a time, whichever gateway
 * asked), with `live` publishing the head. At startup it publishes the registry's active head
 * when none is published yet (the first deployment, or a Redis that lost its data).
 */
export async function startModelsWorker(o: {
  redisUrl: string;
  redis: Redis;
  registry: Registry;
  /** Publishes the head; refreshed before each operation (which backbones the inference workers run). */
  live: LiveHead & { refresh(): Promise<void> };
  log: Log;
}): Promise<{ close(): Promise<void> }> {
  const active = o.registry.readActiveState().active;
  if (active && (await publishHead(o.redis, await o.registry.loadModel(active), { onlyIfNone: true })))
    o.log(`models: published the active model ${active} to the inference workers`);
  const admin = new ModelAdmin(o.live, o.registry);
  const worker = new Worker<ModelOp, ModelReply>(
    MODELS_QUEUE,
    async (job) => {
      try {
        await o.live.refresh();
        return { ok: true, value: await run(admin, job.data) };
      } catch (err) {
        if (!(err instanceof CatdogError)) o.log(`models: ${job.data.op} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
        return { ok: false, error: toWire(err) };
      }
    },
    { connection: blockingConnection(o.redisUrl), concurrency: 1 },
  );
  worker.on('error', (err) => o.log(`models: queue error: ${err.message}`));
  await worker.waitUntilReady();
  o.log(`models: the jobs worker keeps the model registry (${o.registry.dir}) and answers ${MODELS_QUEUE}`);
  return { close: () => worker.close() };
}
