/**
 * The doors of a distributed deployment: the gateway (discord.js, one shard set per process) and
 * the web page. Neither runs inference: photos go to the inference workers through
 * src/scale/remote.ts, jobs to the jobs worker through src/scale/jobs.ts; state is in Redis.
 */
import { commands } from '../../commands/index.ts';
import { Admins } from '../bot/admin.ts';
import { Bot } from '../bot/client.ts';
import type { BotServices, Log } from '../bot/services.ts';
import type { Config } from '../config.ts';
import { WorkGate } from '../queue.ts';
import { Store } from '../store/index.ts';
import { Metrics } from '../metrics.ts';
import { startWeb } from '../web/server.ts';
import { blockingConnection, CLASSIFY_QUEUE } from './connections.ts';
import { liveWorkers } from './heads.ts';
import type { RunningRole } from './inference-worker.ts';
import { distributedAdmin } from './jobs.ts';
import { QueuedModels } from './models.ts';
import { RemoteClassifier } from './remote.ts';

async function remoteClassifier(config: Config): Promise<RemoteClassifier> {
  return RemoteClassifier.open({ redisUrl: config.scale.redisUrl!, size: config.queue.size, deadlineMs: config.scale.classifyDeadlineMs });
}

/** One gateway process: a discord.js Client (the shards ShardingManager gave it, or all of them). */
export async function startGateway(config: Config, log: Log): Promise<RunningRole> {
  if (!config.discord.token) throw new Error('CATDOG_ROLE=gateway needs DISCORD_TOKEN.');
  const store = await Store.open(config.store, log);
  const remote = await remoteClassifier(config);
  const redis = blockingConnection(config.scale.redisUrl!);
  const models = await QueuedModels.open(config.scale.redisUrl!);
  const gate = new WorkGate();
  const metrics = new Metrics();
  const abort = new AbortController();
  const services: BotServices = {
    config,
    store,
    classifier: remote,
    metrics,
    gate,
    log,
    admins: new Admins(config),
    // One bucket per user in Redis, whichever shard sees the request.
    userRate: store.rateLimiter(config.rate, 'rate:user:'),
  };
  services.admin = await distributedAdmin({ config, store, redis, models, log });
  const bot = new Bot(services, commands, abort.signal);
  metrics.watchDiscord(() => bot.connected);
  await bot.start(config.discord.token);
  const shards = bot.client.shard ? `shard(s) ${bot.client.shard.ids.join(', ')} of ${bot.client.shard.count}` : 'all shards';
  log(`gateway: ${shards}; photos go to ${CLASSIFY_QUEUE} (inference workers), state in ${store.description}`);
  return {
    name: `gateway ${shards}`,
    async close() {
      await gate.close();
      await bot.settled();
      await bot.stop();
      await services.admin?.jobs.shutdown();
      await models.close();
      await remote.close();
      await redis.quit().catch(() => undefined);
      await store.close();
    },
  };
}

/** CATDOG_ROLE=web: the upload page, /api/classify (enqueue and wait, with a deadline), /healthz with Redis and the live workers. */
export async function startWebRole(config: Config, log: Log): Promise<RunningRole> {
  const remote = await remoteClassifier(config);
  const redis = blockingConnection(config.scale.redisUrl!);
  const gate = new WorkGate();
  const metrics = new Metrics();
  let lastModel: { backbones: string[]; model: string | null } = { backbones: [], model: null };
  const web = await startWeb(
    {
      config,
      classifier: remote,
      metrics,
      gate,
      modelInfo: () => ({ ...lastModel, loadMs: 0 }),
      discordConnected: () => null,
      log,
      health: async () => {
        const [pong, workers, beats] = await Promise.all([
          redis.ping().catch(() => null),
          remote.queue.getWorkers().catch(() => null),
          liveWorkers(redis).catch(() => []),
        ]);
        if (beats[0]) lastModel = { backbones: beats[0].backbones, model: beats[0].model };
        const live = workers?.length ?? 0;
        return {
          ok: pong === 'PONG' && live > 0,
          redis: { connected: pong === 'PONG' },
          workers: { live, models: beats.map((b) => ({ name: b.name, model: b.model })) },
        };
      },
    },
    config.web.port,
    config.web.host,
  );
  log(`web: the upload page is at ${web.url}/ (POST /api/classify → ${CLASSIFY_QUEUE}, GET /healthz, GET /metrics)`);
  return {
    name: 'web',
    async close() {
      await gate.close();
      await web.close();
      await remote.close();
      await redis.quit().catch(() => undefined);
    },
  };
}
