/**
 * CATDOG_ROLE=inference: INFERENCE_PROCESSES model processes (default 1), each with its own BullMQ
 * Worker on `catdog-classify` at concurrency 1 and one set of ONNX sessions, loaded once at
 * startup, with floor(cores / INFERENCE_PROCESSES) ONNX Runtime threads unless CATDOG_THREADS says
 * (src/config.ts): processes x threads = cores by construction. This process only moves jobs and
 * renews their locks, so a long `session.run` never stalls a lock; SIGKILL it and its jobs' locks
 * expire (WORKER_LOCK_SECONDS) and other workers take them over; the children exit with it.
 *
 * Each answers with the head published in Redis (src/scale/heads.ts), swapped on the channel's
 * message, and says every 2 s in Redis which model it answers with (/model shows it).
 */
import { hostname } from 'node:os';
import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
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

interface Slot {
  name: string;
  model: ModelProcess;
  worker: Worker<ClassifyJobData, ClassifyJobResult>;
  beat(): Promise<void>;
}

/** One model process and its worker, named `name`. */
async function startSlot(config: Config, env: Env, name: string, redis: Redis, log: (line: string) => void): Promise<Slot> {
  const url = config.scale.redisUrl!;
  const threads = config.scale.inferenceThreads;
  const model = await ModelProcess.start({ ...env, CATDOG_THREADS: String(threads) }, log);
  log(
    `inference: model process pid ${model.pid} loaded (${model.info().backbones.join(' + ')}, head ${model.info().model ?? 'none'}, ${model.threads ?? 'default'} thread(s))`,
  );

  let swapping: Promise<void> = Promise.resolve();
  const applyHead = () =>
    (swapping = swapping
      .then(async () => {
        const published = await readHead(redis);
        if (!published || published.id === model.info().model) return;
        try {
          await model.setHead(new Head(published.file));
          log(`inference: ${name} now answers with model ${published.id}`);
        } catch (err) {
          log(`inference: ${name} cannot answer with the published model ${published.id}: ${err instanceof Error ? err.message : String(err)}`);
        }
      })
      .catch(() => undefined));

  const beat = async () => {
    await applyHead();
    const info = model.info();
    const b: WorkerBeat = {
      name,
      host: hostname(),
      pid: process.pid,
      model: info.model,
      backbones: info.backbones,
      precisions: info.precisions,
      threads: model.threads,
      at: new Date().toISOString(),
    };
    await redis.set(`${WORKER_KEY_PREFIX}${name}`, JSON.stringify(b), 'PX', BEAT_MS * 5).catch(() => undefined);
  };
  await beat();

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
  return { name, model, worker, beat };
}

export async function startInferenceWorker(config: Config, env: Env, log: (line: string) => void): Promise<RunningRole> {
  const url = config.scale.redisUrl!;
  const { inferenceProcesses: count, inferenceThreads: threads, cores } = config.scale;
  const base = `inference@${hostname()}:${process.pid}`;
  log(`inference: ${count} model process(es) x ${threads} thread(s) on ${cores} core(s)`);
  if (count * threads > cores) {
    log(`inference: warning: ${count} x ${threads} threads is more than the ${cores} core(s) here; they will wait for each other (lower INFERENCE_PROCESSES or CATDOG_THREADS)`);
  }
  const redis = blockingConnection(url);
  const sub = blockingConnection(url);
  const slots: Slot[] = [];
  const stop = async () => {
    clearInterval(beats);
    await Promise.all(slots.map((s) => s.worker.close())); // each finishes the photo in hand
    await Promise.all(slots.map((s) => redis.del(`${WORKER_KEY_PREFIX}${s.name}`).catch(() => undefined)));
    await sub.quit().catch(() => undefined);
    await redis.quit().catch(() => undefined);
    await Promise.all(slots.map((s) => s.model.close()));
  };
  const beatAll = () => void Promise.all(slots.map((s) => s.beat()));
  const beats = setInterval(beatAll, BEAT_MS);
  try {
    // One at a time: loading several sets of sessions at once only fights for the same cores.
    for (let k = 0; k < count; k++) slots.push(await startSlot(config, env, count === 1 ? base : `${base}.${k + 1}`, redis, log));
  } catch (err) {
    await stop();
    throw err;
  }
  sub.on('message', beatAll);
  sub.on('ready', beatAll);
  await sub.subscribe(HEAD_CHANNEL);
  return { name: count === 1 ? base : `${base} (${count} model processes)`, close: stop };
}
