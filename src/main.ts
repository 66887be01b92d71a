/**
 * `npm start`: .env → config → classifier → store → web page (+ the Discord bot when a token is set).
 * SIGTERM/SIGINT: take no new work, finish what is in flight (answers included), close the store,
 * exit 0.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { commands } from '../commands/index.ts';
import { Admins } from './bot/admin.ts';
import { Bot } from './bot/client.ts';
import { backboneList } from './bot/replies/format.ts';
import type { AdminServices, BotServices, Log } from './bot/services.ts';
import { loadConfig, processEnv, type Config, type Env } from './config.ts';
import { ConfigError } from './errors.ts';
import type { BackboneName, ImageClassifier } from './model/types.ts';
import type { ModelProcess } from './scale/embedded.ts';
import type { Classifier as RealClassifier } from './model/classifier.ts';
import { ClassifyQueue, QueuedClassifier, WorkGate } from './queue.ts';
import { Store } from './store/index.ts';
import { Metrics } from './metrics.ts';
import { startWeb, type RunningWeb } from './web/server.ts';

/** A classifier that can say what it runs (the real one: src/model/classifier.ts). */
export interface LoadedClassifier extends ImageClassifier {
  info(): { backbones: BackboneName[]; model: string | null; loadMs: number };
  close?(): Promise<void>;
}

export interface MainOptions {
  env?: Env;
  /** Injected classifier; default: the real one, loaded from the models folder. */
  classifier?: LoadedClassifier;
  log?: Log;
  /** Install SIGTERM/SIGINT handlers that shut down and exit (default true). */
  handleSignals?: boolean;
  exit?: (code: number) => void;
  /** Least time between two edits of a job's progress message (default 5000 ms; tests use less). */
  jobProgressIntervalMs?: number;
  /** How long an interaction token edits its reply before the channel message is edited instead (default 14 min). */
  interactionTokenTtlMs?: number;
}

export interface App {
  config: Config;
  web: RunningWeb;
  bot: Bot | null;
  store: Store;
  services: BotServices;
  /** Graceful stop; resolves with the exit code (0 when everything in flight finished). */
  shutdown(reason: string): Promise<number>;
}

/** Longest wait for work in flight at shutdown before it is abandoned. */
const SHUTDOWN_GRACE_MS = 60_000;

function timestamped(line: string): void {
  process.stdout.write(`${new Date().toISOString()} ${line}\n`);
}

/**
 * The real classifier runs in a model process (src/scale/embedded.ts): ONNX Runtime's synchronous
 * session.run and the jobs' batches never block this process's event loop (gateway, web).
 */
async function startModelProcess(env: Env, log: Log): Promise<ModelProcess> {
  const { ModelProcess } = await import('./scale/embedded.ts');
  return ModelProcess.start(env, log);
}

/**
 * Jobs and model operations, when the classifier can train (the real ONNX one; the bot's tests
 * inject a double that cannot). The jobs use this same classifier instance: their backbone
 * batches go through its priority lock behind interactive requests. Jobs left 'running' by a
 * process that died are marked interrupted here.
 */
async function adminServices(
  classifier: LoadedClassifier,
  model: ModelProcess | null,
  config: Config,
  store: Store,
  log: Log,
  options: MainOptions,
): Promise<AdminServices | undefined> {
  const { Classifier } = await import('./model/classifier.ts');
  if (!model && !(classifier instanceof Classifier)) {
    log('admin: jobs are off (the classifier in use cannot train)');
    return undefined;
  }
  const [{ JobRunner }, { pipelineWork }, { ModelAdmin }, { Registry }] = await Promise.all([
    import('./jobs/runner.ts'),
    import('./jobs/work.ts'),
    import('./jobs/models.ts'),
    import('./model/registry.ts'),
  ]);
  const registry = new Registry(config.model.registryDir);
  const live = model ?? (classifier as RealClassifier);
  const work = model ? model.jobWork : pipelineWork({ classifier: live as RealClassifier, dataDir: config.dataDir, registry });
  const jobs = new JobRunner({ repo: store.jobs, work, data: config.data, log });
  const interrupted = await jobs.recover();
  if (interrupted.length) log(`admin: ${interrupted.length} job(s) interrupted by the last stop; resume them from /jobs`);
  log(`admin: TRAIN_DATA ${config.data.train.join(', ') || '(not set)'}; TEST_DATA ${config.data.test ?? '(not set)'}`);
  return {
    jobs,
    models: new ModelAdmin(live, registry),
    progressIntervalMs: options.jobProgressIntervalMs ?? 5000,
    tokenTtlMs: options.interactionTokenTtlMs ?? 14 * 60_000,
    background: new Set(),
  };
}

export async function main(options: MainOptions = {}): Promise<App> {
  const log = options.log ?? timestamped;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const env = options.env ?? processEnv();
  const config = loadConfig(env);
  if (config.scale.role !== 'embedded') {
    throw new ConfigError([`CATDOG_ROLE=${config.scale.role} is started by src/scale/roles.ts (npm run start:${config.scale.role}), not by main().`]);
  }

  const model = options.classifier ? null : await startModelProcess(env, log);
  if (model) log(`model process: pid ${model.pid} runs the classifier and the jobs; this process does Discord and the web page`);
  const classifier: LoadedClassifier = options.classifier ?? model!;
  const info = classifier.info();
  log(`model: backbones ${backboneList(info.backbones)}; head ${info.model ?? 'none (no trained head: answers will fail until one is trained)'}; loaded in ${Math.round(info.loadMs)} ms`);

  const store = await Store.open(config.store, log);
  log(`store: ${store.description}`);

  const queue = new ClassifyQueue({
    size: config.queue.size,
    concurrency: config.queue.concurrency,
    perKey: config.queue.perGuild,
    perKeyWaiting: config.queue.perGuildWaiting,
  });
  const metrics = new Metrics();
  metrics.watchQueue(() => queue.stats());
  const gate = new WorkGate();
  const abort = new AbortController();
  const services: BotServices = {
    config,
    store,
    classifier: new QueuedClassifier(classifier, queue, { downloads: config.queue.downloads }),
    metrics,
    gate,
    log,
    admins: new Admins(config),
    userRate: store.rateLimiter(config.rate, 'rate:user:'),
  };
  services.admin = await adminServices(classifier, model, config, store, log, options);

  let bot: Bot | null = null;
  metrics.watchDiscord(() => (bot ? bot.connected : null));
  const web = await startWeb(
    {
      config,
      classifier: services.classifier,
      metrics,
      gate,
      modelInfo: () => classifier.info(),
      discordConnected: () => (bot ? bot.connected : null),
      log,
    },
    config.web.port,
    config.web.host,
  );
  log(`web: the upload page is at ${web.url}/ (POST /api/classify, GET /healthz, GET /metrics)`);

  let stopping: Promise<number> | null = null;
  const shutdown = (reason: string): Promise<number> => {
    stopping ??= (async () => {
      log(`${reason}: taking no new work; finishing ${gate.inFlight} request(s) in flight`);
      let code = 0;
      const timer = setTimeout(() => {
        log(`shutdown: work still in flight after ${SHUTDOWN_GRACE_MS / 1000} s; abandoning it`);
        code = 1;
        abort.abort(new Error('shutdown grace period over'));
      }, SHUTDOWN_GRACE_MS);
      timer.unref();
      // Uploads still arriving are ended, not waited for (a slow client cannot hold the shutdown).
      const closing = gate.close();
      web.abortUploads();
      await closing;
      if (services.admin) {
        // A running job stops (within one batch) and is recorded 'interrupted': resumable after the restart.
        await services.admin.jobs.shutdown();
        while (services.admin.background.size) await Promise.allSettled([...services.admin.background]);
      }
      queue.close();
      await queue.idle();
      if (bot) {
        await bot.settled();
        await bot.stop();
      }
      await web.close();
      await store.close();
      await classifier.close?.();
      await model?.close();
      clearTimeout(timer);
      log(`shutdown complete (exit ${code})`);
      return code;
    })();
    return stopping;
  };

  if (options.handleSignals ?? true) {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      process.once(signal, () => {
        void shutdown(signal).then(exit, (err) => {
          log(`shutdown failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
          exit(1);
        });
      });
    }
  }

  if (config.discord.token) {
    bot = new Bot(services, commands, abort.signal);
    try {
      await bot.start(config.discord.token);
    } catch (err) {
      await shutdown('Discord login failed');
      throw err;
    }
  } else {
    log(`Discord: no DISCORD_TOKEN, so the bot is off; only the web page runs (${web.url}/)`);
  }
  log('catdog is ready');
  return { config, web, bot, store, services, shutdown };
}

const isEntry = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isEntry) {
  // CATDOG_ROLE picks the role; embedded (the default) comes back to main().
  const { runEntry } = await import('./scale/roles.ts');
  await runEntry(undefined, (o) => main(o));
}
