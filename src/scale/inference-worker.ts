/**
 * CATDOG_ROLE=inference: a BullMQ Worker on `catdog-classify`, concurrency 1, whose processor is a
 * child process (the model process of src/scale/embedded.ts: one set of ONNX sessions, loaded once
 * at startup). This process only moves jobs and renews their locks, so a long `session.run`
 * never stalls a lock; SIGKILL it and its job's lock expires (WORKER_LOCK_SECONDS) and another
 * worker takes the job over; the child exits with it. Run one per core group: processes x
 * CATDOG_THREADS = cores.
 *
 * It answers with the head published in Redis (src/scale/heads.ts), swapped on the channel's
 * message, and says every 2 s in Redis which model it answers with (/model shows it).
 */
import { hostname } from 'node:os';
import { Worker, type Job } from 'bullmq';
import type { Config, Env } from '../config.ts';
import { CatdogError } from '../errors.ts';
import { Head } from '../model/head.ts';
import { blockingConnection, CLASSIFY_QUEUE, HEAD_CHANNEL, WORKER_KEY_PREFIX } from './connections.ts';
import { ModelProcess, ModelProcessLost } from './embedded.ts';
import { readHead, type WorkerBeat } from './heads.ts';
import type { ClassifyJobData, ClassifyJobResult } from './remote.ts';
import { toWire } from './wire.ts';

export interface RunningRole {
  name: string;
  close(): Promise<void>;
}

const BEAT_MS = 2000;

export async function startInferenceWorker(config: Config, env: Env, log: (line: string) => void): Promise<RunningRole> {
  const url = config.scale.redisUrl!;
  const name = `inference@${hostname()}:${process.pid}`;
  const model = await ModelProcess.start(env, log);
  const threads = Number(env.CATDOG_THREADS) || null;
  log(
    `inference: model process pid ${model.pid} loaded (${model.info().backbones.join(' + ')}, head ${model.info().model ?? 'none'}, ${threads ?? 'default'} thread(s))`,
  );

  const redis = blockingConnection(url);
  const sub = blockingConnection(url);

  let swapping: Promise<void> = Promise.resolve();
  const applyHead = () =>
    (swapping = swapping
      .then(async () => {
        const published = await readHead(redis);
        if (!published || published.id === model.info().model) return;
        try {
          await model.setHead(new Head(published.file));
          log(`inference: now answering with model ${published.id}`);
        } catch (err) {
          log(`inference: cannot answer with the published model ${published.id}: ${err instanceof Error ? err.message : String(err)}`);
        }
      })
      .catch(() => undefined));

  const beat = async () => {
    await applyHead();
    const info = model.info();
    const b: WorkerBeat = { name, host: hostname(), pid: process.pid, model: info.model, backbones: info.backbones, threads, at: new Date().toISOString() };
    await redis.set(`${WORKER_KEY_PREFIX}${name}`, JSON.stringify(b), 'PX', BEAT_MS * 5).catch(() => undefined);
  };
  await beat();
  const beats = setInterval(() => void beat(), BEAT_MS);
  sub.on('message', () => void beat());
  sub.on('ready', () => void applyHead());
  await sub.subscribe(HEAD_CHANNEL);

  const worker = new Worker<ClassifyJobData, ClassifyJobResult>(
    CLASSIFY_QUEUE,
    async (job: Job<ClassifyJobData, ClassifyJobResult>) => {
      const bytes = Buffer.from(job.data.bytes, 'base64');
      try {
        return { ok: true, prediction: await model.classify(bytes), worker: name };
      } catch (err) {
        // A photo we cannot read is an answer (no retry); a lost model process is retried elsewhere.
        if (err instanceof CatdogError && !(err instanceof ModelProcessLost)) return { ok: false, error: toWire(err), worker: name };
        throw err;
      }
    },
    {
      connection: blockingConnection(url),
      concurrency: 1,
      name,
      lockDuration: config.scale.workerLockMs,
      stalledInterval: config.scale.workerLockMs,
      maxStalledCount: 2,
    },
  );
  worker.on('error', (err) => log(`inference: queue error: ${err.message}`));
  worker.on('failed', (job, err) => log(`inference: job ${job?.id} failed (attempt ${job?.attemptsMade}): ${err.message}`));
  await worker.waitUntilReady();
  log(`inference: ${name} takes photos from ${CLASSIFY_QUEUE}`);

  return {
    name,
    async close() {
      clearInterval(beats);
      await worker.close(); // finishes the photo in hand
      await redis.del(`${WORKER_KEY_PREFIX}${name}`).catch(() => undefined);
      await sub.quit().catch(() => undefined);
      await redis.quit().catch(() => undefined);
      await model.close();
    },
  };
}
