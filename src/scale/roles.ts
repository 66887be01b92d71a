/**
 * `npm run start:<role>` (or CATDOG_ROLE=<role> npm start): one role of a deployment on Redis.
 * gateway — discord.js; with SHARD_COUNT > 1 (or auto, asked of Discord through DISCORD_API_URL) a ShardingManager, one process per shard, each
 *           running the gateway (src/scale/shard.ts); defers, checks the per-user rate limit, enqueues.
 * inference — a BullMQ worker on catdog-classify with the model in a child process.
 * jobs    — the BullMQ worker of /retrain and /score, and the notifier of their messages.
 * web     — the upload page and /api/classify on the queue, /healthz with Redis and the workers.
 */
import { fileURLToPath } from 'node:url';
import { ShardingManager } from 'discord.js';
import type { Log } from '../bot/services.ts';
import { loadConfig, processEnv, type Config, type Env, type Role } from '../config.ts';
import { ConfigError } from '../errors.ts';
import { startGateway, startWebRole } from './doors.ts';
import { tsExecArgv } from './fork.ts';
import { startInferenceWorker, type RunningRole } from './inference-worker.ts';
import { startJobsWorker } from './jobs.ts';
import { resolveShards, type ShardPlan } from './shard-count.ts';

const SHARD = fileURLToPath(new URL('./shard.ts', import.meta.url));

/**
 * Why discord.js's own ShardingManager and not discord-hybrid-sharding: one process per shard is
 * what a gateway shard needs here (it runs no inference, so a process is mostly idle I/O), it
 * ships with discord.js (no other dependency, same release cycle), and respawns a dead shard.
 * discord-hybrid-sharding's clusters (many shards per process) pay off past dozens of shards,
 * where a process per shard costs too much memory; catdog is far from that.
 */
async function startShardManager(config: Config, plan: ShardPlan, log: Log): Promise<RunningRole> {
  // Always an explicit number: 'auto' here would make discord.js ask discord.com itself, past DISCORD_API_URL.
  const total = plan.total;
  const manager = new ShardingManager(SHARD, {
    token: config.discord.token!,
    totalShards: total,
    mode: 'process',
    respawn: true,
    execArgv: tsExecArgv(),
  });
  manager.on('shardCreate', (shard) => {
    log(`gateway: shard ${shard.id} starting (pid ${shard.process?.pid ?? '?'})`);
    shard.on('death', () => log(`gateway: shard ${shard.id} died; discord.js starts it again`));
  });
  await manager.spawn({ amount: total, delay: plan.spawnDelayMs, timeout: 120_000 });
  log(`gateway: ${manager.shards.size} shard process(es) up`);
  return {
    name: `gateway manager (${manager.shards.size} shards)`,
    async close() {
      // SIGTERM to each shard: it finishes what it has in flight and exits.
      manager.respawn = false;
      await Promise.all(
        [...manager.shards.values()].map(async (s) => {
          const p = s.process;
          if (!p || p.exitCode !== null) return;
          const gone = new Promise<void>((resolve) => p.once('exit', () => resolve()));
          p.kill('SIGTERM');
          const timer = setTimeout(() => p.kill('SIGKILL'), 65_000);
          await gone;
          clearTimeout(timer);
        }),
      );
    },
  };
}

export async function startRole(role: Role, config: Config, env: Env, log: Log): Promise<RunningRole> {
  switch (role) {
    case 'gateway': {
      const plan = await resolveShards(config, log);
      if (plan.total !== 1) return startShardManager(config, plan, log);
      // One shard, in this process (its Client is told it is shard 0 of 1: src/bot/client.ts).
      return startGateway(config, log);
    }
    case 'inference':
      return startInferenceWorker(config, env, log);
    case 'jobs':
      return startJobsWorker(config, env, log);
    case 'web':
      return startWebRole(config, log);
    case 'embedded':
      throw new Error('the embedded role is src/main.ts');
  }
}

function timestamped(line: string): void {
  process.stdout.write(`${new Date().toISOString()} ${line}\n`);
}

/** The entry: reads the configuration, starts the role, stops it on SIGTERM/SIGINT (exit 0 when it stopped cleanly). */
/**
 * A process entry (`npm start`, `npm run start:<role>`): reads .env, then runs the role (CATDOG_ROLE
 * or `roleArg`). A configuration problem exits 2 with the list of problems; any other failure to
 * start exits 1.
 */
export async function runEntry(roleArg: string | undefined, embedded?: (options: { env: Env }) => Promise<unknown>): Promise<void> {
  const dotenv = await import('dotenv');
  dotenv.config({ quiet: true });
  try {
    await runRole(roleArg, processEnv(), embedded);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\nSee .env.example for what each variable means.\n`);
      process.exit(2);
    }
    process.stderr.write(`catdog could not start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  }
}

export async function runRole(
  roleArg: string | undefined,
  env: Env = processEnv(),
  /** main() itself when src/main.ts is the entry: importing it again from here would wait on its own top-level await. */
  embedded?: (options: { env: Env }) => Promise<unknown>,
): Promise<void> {
  const merged = roleArg ? { ...env, CATDOG_ROLE: roleArg } : env;
  const config = loadConfig(merged);
  const role = config.scale.role;
  if (role === 'embedded') {
    const start = embedded ?? (await import('../main.ts')).main;
    await start({ env: merged });
    return;
  }
  const log = (l: string) => timestamped(`[${role}] ${l}`);
  const running = await startRole(role, config, merged, log);
  log(`catdog ${role} is ready`);
  let stopping = false;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      if (stopping) return;
      stopping = true;
      log(`${signal}: stopping ${running.name}`);
      running.close().then(
        () => {
          log('stopped (exit 0)');
          process.exit(0);
        },
        (err) => {
          log(`stop failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
          process.exit(1);
        },
      );
    });
  }
}
