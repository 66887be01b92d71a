/**
 * Environment → typed configuration. Every wrong or missing value is reported, one sentence each,
 * in a single ConfigError (so a person fixes their .env in one go, not one value per restart).
 * `.env.example` documents every variable read here.
 */
import { availableParallelism } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { ConfigError } from './errors.ts';
import { BACKBONES } from './model/backbones/index.ts';
import { modelSettings, type ModelSettings } from './model/settings.ts';
import type { BackboneName } from './model/types.ts';
import { DEFAULT_MODELS_DIR } from './paths.ts';
import type { BucketOptions } from './rate-limit.ts';

export type Env = Readonly<Record<string, string | undefined>>;

export type StoreConfig =
  | { kind: 'sqlite'; url: string; path: string }
  | { kind: 'redis'; url: string };

export interface Config {
  discord: {
    /** Bot token; without one the bot does not connect (the web page still runs). */
    token: string | null;
    /** Application id; when null it is read from Discord after login. */
    appId: string | null;
    /** Guild for development command registration; null registers globally. */
    guildId: string | null;
    /** REST base (discord.js `rest.api`), e.g. https://discord.com/api; null for discord.js's default. */
    apiUrl: string | null;
    /** CDN base (discord.js `rest.cdn`); null for discord.js's default. */
    cdnUrl: string | null;
    /** Request the privileged Message Content intent (needed by auto-detect). */
    messageContent: boolean;
  };
  /** Hosts (names, lower case) that images may be downloaded from. */
  attachmentHosts: string[];
  web: {
    port: number;
    /** Listening address: 127.0.0.1 unless WEB_HOST says otherwise (a public page). */
    host: string;
    /** Open connections at once (server.maxConnections); more are closed at once. */
    maxConnections: number;
    /** Longest a request may take to arrive, headers and body (server.requestTimeout). */
    requestTimeoutMs: number;
    /** Upload bytes being read at once, all clients together; more is refused (503) before it is read. */
    maxBytesInFlight: number;
    /** Per-client (address) token bucket for POST /api/classify. */
    rate: BucketOptions;
    /** When set, GET /metrics needs `Authorization: Bearer <token>`. */
    metricsToken: string | null;
  };
  dataDir: string;
  store: StoreConfig;
  limits: {
    maxImageBytes: number;
    maxImagePixels: number;
    downloadTimeoutMs: number;
  };
  /** Per-user token bucket for photos (/catdog, Cat or dog?, auto-detect): a burst, then one per refill. */
  rate: BucketOptions;
  queue: {
    /** Jobs that may wait for the classifier; more are answered "busy". */
    size: number;
    /** Classifications run at once. */
    concurrency: number;
    /** Classifications of one guild (or one web client) run at once. */
    perGuild: number;
    /** Waiting places one guild (or web client) may hold, so one server cannot take them all. */
    perGuildWaiting: number;
    /** Photos downloaded (or held, downloaded, until classified) at once by the bot. */
    downloads: number;
  };
  admins: { userIds: string[]; roleIds: string[] };
  /** What the admin jobs work on: training sources (TRAIN_DATA, comma-separated), the test set and its labels. */
  data: { train: string[]; test: string | null; testLabels: string | null };
  /** Backbones, weights, head, ONNX Runtime and where models live. */
  model: ModelSettings;
  /** Running under CI (the CI variable): progress as plain lines, never redrawn. */
  ci: boolean;
  /** Which part of catdog this process is (src/scale): everything in one (embedded) or one role of a deployment on Redis. */
  scale: ScaleConfig;
}

export const ROLES = ['embedded', 'gateway', 'inference', 'jobs', 'web'] as const;
export type Role = (typeof ROLES)[number];

export interface ScaleConfig {
  /** CATDOG_ROLE (default embedded). */
  role: Role;
  /** REDIS_URL: the queues (BullMQ) and the shared state; needed by every role but embedded. */
  redisUrl: string | null;
  /** Gateway shards (SHARD_COUNT, a number; 'auto' asks Discord). */
  shards: number | 'auto';
  /** Wait between starting two shard processes (SHARD_SPAWN_DELAY_MS; Discord allows one IDENTIFY per 5 s). */
  shardSpawnDelayMs: number;
  /**
   * This process is a shard started by discord.js's ShardingManager (it sets SHARDS and
   * SHARD_COUNT for it, and the Client reads them). Otherwise the Client is one shard of one,
   * whatever SHARD_COUNT (a gateway-role setting) says.
   */
  managedShard: boolean;
  /** Longest a door waits for a worker's answer (CLASSIFY_DEADLINE_SECONDS). */
  classifyDeadlineMs: number;
  /** Least time between two edits of a job's message by the jobs worker (JOB_PROGRESS_MS). */
  jobProgressMs: number;
  /** How long a worker's lock on a job lasts without renewal; a killed worker's job is retried after it (WORKER_LOCK_SECONDS). */
  workerLockMs: number;
  /** Model processes (one BullMQ worker and one set of ONNX sessions each) the inference role runs on this machine (INFERENCE_PROCESSES, default 1). */
  inferenceProcesses: number;
  /** ONNX Runtime threads of each of them: CATDOG_THREADS when set, else threadsPerProcess(cores, inferenceProcesses). */
  inferenceThreads: number;
  /** The cores this process may use (os.availableParallelism()). */
  cores: number;
}

/** Threads for each of `processes` model processes sharing `cores`, so processes × threads ≤ cores: floor(cores / processes), at least 1. */
export function threadsPerProcess(cores: number, processes: number): number {
  return Math.max(1, Math.floor(cores / Math.max(1, processes)));
}

export const DEFAULT_ATTACHMENT_HOSTS = ['cdn.discordapp.com', 'media.discordapp.net'] as const;

/** Something shaped like a Discord bot token (three dot-separated base64url parts) or another long secret. */
const TOKEN_LIKE = /[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}|[A-Za-z0-9_+/=-]{40,}/;

/** Collects problems while reading, so all of them can be reported at once. */
class Reader {
  readonly problems: string[] = [];
  private readonly secrets: string[];
  constructor(private readonly env: Env) {
    this.secrets = ['DISCORD_TOKEN', 'METRICS_TOKEN'].map((k) => env[k]?.trim()).filter((v): v is string => Boolean(v && v.length >= 8));
  }

  /** A value for an error message: never a secret (the token pasted into the wrong variable). */
  shown(v: string): string {
    if (TOKEN_LIKE.test(v) || this.secrets.some((t) => v.includes(t))) return '(a value that looks like a token; not shown)';
    return `"${v.length > 80 ? `${v.slice(0, 80)}…` : v}"`;
  }

  raw(name: string): string | undefined {
    const v = this.env[name];
    if (v === undefined) return undefined;
    const t = v.trim();
    return t === '' ? undefined : t;
  }

  string(name: string): string | null {
    return this.raw(name) ?? null;
  }

  snowflake(name: string): string | null {
    const v = this.raw(name);
    if (v === undefined) return null;
    if (!/^\d{5,25}$/.test(v)) {
      this.problems.push(`${name} must be a Discord id (digits only, e.g. 123456789012345678), got ${this.shown(v)}.`);
      return null;
    }
    return v;
  }

  snowflakes(name: string): string[] {
    const v = this.raw(name);
    if (v === undefined) return [];
    const ids = v.split(',').map((s) => s.trim()).filter(Boolean);
    const bad = ids.filter((id) => !/^\d{5,25}$/.test(id));
    if (bad.length) {
      this.problems.push(`${name} must be a comma-separated list of Discord ids; not ids: ${bad.map((b) => this.shown(b)).join(', ')}.`);
      return [];
    }
    return ids;
  }

  int(name: string, fallback: number, min: number, max: number, what: string): number {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
      this.problems.push(`${name} must be ${what} (a whole number from ${min} to ${max}), got ${this.shown(v)}.`);
      return fallback;
    }
    return Number(v);
  }

  /** Bytes, as a plain number or with a KB/MB/GB suffix (1024-based): 8MB, 512KB. */
  bytes(name: string, fallback: number, max: number): number {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    const m = /^(\d+(?:\.\d+)?)\s*(B|KB|KIB|MB|MIB|GB|GIB)?$/i.exec(v);
    const unit = (m?.[2] ?? 'B').toUpperCase().replace('I', '');
    const n = m ? Math.floor(Number(m[1]) * ({ B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 } as Record<string, number>)[unit]!) : NaN;
    if (!Number.isFinite(n) || n < 1 || n > max) {
      this.problems.push(`${name} must be a size in bytes from 1 to ${max} (e.g. 8388608 or 8MB), got ${this.shown(v)}.`);
      return fallback;
    }
    return n;
  }

  bool(name: string, fallback: boolean): boolean {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if (/^(1|true|yes|on)$/i.test(v)) return true;
    if (/^(0|false|no|off)$/i.test(v)) return false;
    this.problems.push(`${name} must be true or false, got ${this.shown(v)}.`);
    return fallback;
  }

  httpUrl(name: string): string | null {
    const v = this.raw(name);
    if (v === undefined) return null;
    let u: URL;
    try {
      u = new URL(v);
    } catch {
      this.problems.push(`${name} must be an http(s) URL such as https://discord.com/api, got ${this.shown(v)}.`);
      return null;
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      this.problems.push(`${name} must be an http(s) URL, got the ${u.protocol.slice(0, -1)} scheme in ${this.shown(v)}.`);
      return null;
    }
    return v.replace(/\/+$/, '');
  }

  hosts(name: string, fallback: readonly string[]): string[] {
    const v = this.raw(name);
    if (v === undefined) return [...fallback];
    const hosts = v.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
    const bad = hosts.filter((h) => !isHostName(h));
    if (bad.length || hosts.length === 0) {
      this.problems.push(
        `${name} must be a comma-separated list of host names (no scheme, port or path), e.g. cdn.discordapp.com,media.discordapp.net; not host names: ${bad.map((b) => this.shown(b)).join(', ') || '(empty list)'}.`,
      );
      return [...fallback];
    }
    return hosts;
  }

  /** A comma-separated list of paths, each resolved against `base`. */
  paths(name: string, base: string): string[] {
    const v = this.raw(name);
    if (v === undefined) return [];
    return v
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
      .map((p) => (isAbsolute(p) ? p : resolve(base, p)));
  }

  path(name: string, base: string): string | null {
    const v = this.raw(name);
    if (v === undefined) return null;
    return isAbsolute(v) ? v : resolve(base, v);
  }
}

function parsePrecision(r: Reader): 'fp32' | 'int8' {
  const v = r.raw('CATDOG_PRECISION');
  if (v === undefined || v === 'fp32' || v === 'int8') return v ?? 'int8';
  r.problems.push(`CATDOG_PRECISION must be fp32 or int8, got "${v}".`);
  return 'int8';
}

function parseModel(r: Reader, cwd: string): ModelSettings {
  const names = Object.keys(BACKBONES) as BackboneName[];
  let backbones: BackboneName[] | null = null;
  const raw = r.raw('CATDOG_BACKBONES');
  if (raw !== undefined) {
    const list = raw.split(',').map((s) => s.trim()).filter(Boolean);
    const unknown = list.filter((n) => !(names as string[]).includes(n));
    if (unknown.length || list.length === 0) {
      r.problems.push(`CATDOG_BACKBONES must be a comma-separated list of backbones among ${names.join(', ')}; unknown: ${unknown.map((u) => r.shown(u)).join(', ') || '(empty list)'}.`);
    } else backbones = list as BackboneName[];
  }
  const weights: Partial<Record<BackboneName, string>> = {};
  for (const name of names) {
    const spec = r.raw(`CATDOG_WEIGHTS_${name.toUpperCase()}`);
    if (spec !== undefined) weights[name] = spec;
  }
  const arena = r.raw('CATDOG_ARENA') === undefined ? null : r.bool('CATDOG_ARENA', false);
  const modelsDir = r.path('CATDOG_MODELS_DIR', cwd) ?? DEFAULT_MODELS_DIR;
  return modelSettings({
    backbones,
    weights,
    head: r.path('CATDOG_HEAD', cwd),
    threads: r.raw('CATDOG_THREADS') === undefined ? null : r.int('CATDOG_THREADS', 1, 1, 256, 'a number of threads'),
    spin: r.bool('CATDOG_SPIN', false),
    arena,
    precision: parsePrecision(r),
    modelsDir,
    ...(r.raw('CATDOG_REGISTRY_DIR') !== undefined ? { registryDir: r.path('CATDOG_REGISTRY_DIR', cwd)! } : {}),
    kerasWeightsBaseUrl: r.httpUrl('KERAS_WEIGHTS_BASE_URL'),
  });
}

function isHostName(h: string): boolean {
  if (/^\[[0-9a-f:.]+\]$/.test(h)) return true; // [::1]
  return /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/.test(h);
}

function parseStore(r: Reader, dataDir: string): StoreConfig {
  const v = r.raw('STORE_URL');
  if (v === undefined) {
    const path = resolve(dataDir, 'catdog.sqlite');
    return { kind: 'sqlite', url: `sqlite://${path}`, path };
  }
  if (/^rediss?:\/\//i.test(v)) {
    try {
      new URL(v);
      return { kind: 'redis', url: v };
    } catch {
      /* falls through to the problem below */
    }
  } else if (/^sqlite:\/\//i.test(v)) {
    const rest = v.slice('sqlite://'.length);
    if (rest) {
      const path = isAbsolute(rest) ? rest : resolve(rest);
      return { kind: 'sqlite', url: `sqlite://${path}`, path };
    }
  }
  r.problems.push(
    `STORE_URL must be sqlite://<file> or redis://[user:password@]host[:port][/db], got ${r.shown(v.replace(/\/\/([^@/]*)@/, '//***@'))} (leave it empty for a SQLite file under DATA_DIR).`,
  );
  const path = resolve(dataDir, 'catdog.sqlite');
  return { kind: 'sqlite', url: `sqlite://${path}`, path };
}

function parseRole(r: Reader): Role {
  const v = r.raw('CATDOG_ROLE');
  if (v === undefined) return 'embedded';
  if ((ROLES as readonly string[]).includes(v)) return v as Role;
  r.problems.push(`CATDOG_ROLE must be one of ${ROLES.join(', ')}, got "${v}".`);
  return 'embedded';
}

function parseRedisUrl(r: Reader): string | null {
  const v = r.raw('REDIS_URL');
  if (v === undefined) return null;
  try {
    if (/^rediss?:$/.test(new URL(v).protocol)) return v;
  } catch {
    /* the problem below */
  }
  r.problems.push(`REDIS_URL must be redis://[user:password@]host[:port][/db], got "${v}".`);
  return null;
}

/**
 * The process's environment, for what must hand it on whole (a forked model process, shard
 * processes read by discord.js): the one place that reads process.env.
 */
export function processEnv(): Env {
  return process.env;
}

/**
 * discord.js's Client reads SHARD_COUNT from the process's environment whenever its shardCount
 * option is the default 1 (it is how a ShardingManager tells its shard processes the count), so
 * SHARD_COUNT=auto (a gateway-role setting) reaches it as NaN and it refuses to start. A Client
 * that is not a managed shard is shard 0 of 1: the environment says so before it is made.
 */
export function settleShardCount(total: number): void {
  process.env.SHARD_COUNT = String(total);
}

/**
 * Reads the configuration from `env` (normally process.env after dotenv). Relative paths are
 * resolved against `cwd`; `cores` is this machine's (what the inference role's threads are cut
 * from). Throws ConfigError listing every problem found.
 */
export function loadConfig(env: Env = process.env, cwd = process.cwd(), cores = availableParallelism()): Config {
  const r = new Reader(env);
  const dataDir = r.path('DATA_DIR', cwd) ?? resolve(cwd, 'data');
  const config: Config = {
    discord: {
      token: r.string('DISCORD_TOKEN'),
      appId: r.snowflake('DISCORD_APP_ID'),
      guildId: r.snowflake('DISCORD_GUILD_ID'),
      apiUrl: r.httpUrl('DISCORD_API_URL'),
      cdnUrl: r.httpUrl('DISCORD_CDN_URL'),
      messageContent: r.bool('MESSAGE_CONTENT_INTENT', true),
    },
    attachmentHosts: r.hosts('ATTACHMENT_HOSTS', DEFAULT_ATTACHMENT_HOSTS),
    web: {
      port: r.int('PORT', 5000, 0, 65535, 'a TCP port'),
      host: r.string('WEB_HOST') ?? '127.0.0.1',
      maxConnections: r.int('WEB_MAX_CONNECTIONS', 64, 1, 100_000, 'a number of connections'),
      requestTimeoutMs: r.int('WEB_REQUEST_TIMEOUT_SECONDS', 30, 1, 3600, 'a number of seconds') * 1000,
      maxBytesInFlight: r.bytes('WEB_MAX_BYTES_IN_FLIGHT', 64 * 1024 * 1024, 64 * 1024 ** 3),
      rate: {
        burst: r.int('WEB_RATE_BURST', 10, 0, 100_000, 'a number of uploads (0 turns the limit off)'),
        refillMs: r.int('WEB_RATE_REFILL_SECONDS', 3, 1, 86_400, 'a number of seconds') * 1000,
      },
      metricsToken: r.string('METRICS_TOKEN'),
    },
    dataDir,
    store: parseStore(r, dataDir),
    limits: {
      maxImageBytes: r.bytes('MAX_IMAGE_BYTES', 25 * 1024 * 1024, 1024 ** 3),
      maxImagePixels: r.int('MAX_IMAGE_PIXELS', 50_000_000, 1, 1_000_000_000, 'a pixel count'),
      downloadTimeoutMs: r.int('DOWNLOAD_TIMEOUT_SECONDS', 15, 1, 600, 'a number of seconds') * 1000,
    },
    rate: {
      burst: r.int('RATE_BURST', 5, 0, 10_000, 'a number of photos in a row (0 turns the limit off)'),
      refillMs: r.int('RATE_REFILL_SECONDS', 6, 1, 86_400, 'a number of seconds') * 1000,
    },
    queue: {
      size: r.int('QUEUE_SIZE', 32, 0, 10_000, 'a number of waiting jobs'),
      concurrency: r.int('CLASSIFY_CONCURRENCY', 1, 1, 64, 'a number of classifications at once'),
      perGuild: r.int('GUILD_CONCURRENCY', 2, 1, 64, 'a number of classifications at once per guild'),
      perGuildWaiting: 0,
      downloads: r.int('DOWNLOADS_AT_ONCE', 4, 1, 256, 'a number of downloads at once'),
    },
    admins: { userIds: r.snowflakes('ADMIN_USER_IDS'), roleIds: r.snowflakes('ADMIN_ROLE_IDS') },
    data: {
      train: r.paths('TRAIN_DATA', cwd),
      test: r.path('TEST_DATA', cwd),
      testLabels: r.path('TEST_LABELS', cwd),
    },
    model: parseModel(r, cwd),
    ci: r.raw('CI') !== undefined,
    scale: {
      role: parseRole(r),
      redisUrl: parseRedisUrl(r),
      shards: r.raw('SHARD_COUNT') === 'auto' ? 'auto' : r.int('SHARD_COUNT', 1, 1, 4096, "a number of gateway shards (or 'auto')"),
      shardSpawnDelayMs: r.int('SHARD_SPAWN_DELAY_MS', 5500, 0, 600_000, 'a number of milliseconds'),
      managedShard: r.raw('SHARDS') !== undefined,
      classifyDeadlineMs: r.int('CLASSIFY_DEADLINE_SECONDS', 60, 1, 3600, 'a number of seconds') * 1000,
      jobProgressMs: r.int('JOB_PROGRESS_MS', 5000, 100, 600_000, 'a number of milliseconds'),
      workerLockMs: r.int('WORKER_LOCK_SECONDS', 30, 1, 3600, 'a number of seconds') * 1000,
      inferenceProcesses: r.int('INFERENCE_PROCESSES', 1, 1, 256, 'a number of model processes'),
      inferenceThreads: 1,
      cores,
    },
  };
  config.scale.inferenceThreads = config.model.threads ?? threadsPerProcess(cores, config.scale.inferenceProcesses);
  if (config.scale.role !== 'embedded' && !config.scale.redisUrl) {
    r.problems.push(`CATDOG_ROLE=${config.scale.role} needs REDIS_URL (redis://host:port): the roles share their queues and state through Redis.`);
  }
  if (config.scale.role !== 'embedded' && config.store.kind === 'sqlite') {
    if (r.raw('STORE_URL') !== undefined) {
      r.problems.push(
        `STORE_URL is a SQLite file, which only one process may use; CATDOG_ROLE=${config.scale.role} runs beside other processes, so the state must be in Redis (leave STORE_URL empty to use REDIS_URL, or set it to redis://…).`,
      );
    } else if (config.scale.redisUrl) {
      config.store = { kind: 'redis', url: config.scale.redisUrl };
    }
  }
  const size = config.queue.size;
  config.queue.perGuildWaiting = r.int('GUILD_QUEUE_SIZE', Math.max(1, Math.ceil(size / 4)), 0, 10_000, 'a number of waiting jobs per guild');
  if (r.raw('COOLDOWN_SECONDS') !== undefined) {
    r.problems.push('COOLDOWN_SECONDS is no longer read: the per-user limit is now a burst, RATE_BURST photos in a row, then one every RATE_REFILL_SECONDS (see .env.example).');
  }
  if (config.admins.roleIds.length && !config.discord.guildId) {
    r.problems.push('ADMIN_ROLE_IDS needs DISCORD_GUILD_ID: admin roles count only in the home server (admin operations change the model for every server).');
  }
  if (config.discord.token && /\s/.test(config.discord.token)) {
    r.problems.push('DISCORD_TOKEN must be the bot token alone, without spaces or a "Bot " prefix.');
  }
  if (r.problems.length) throw new ConfigError(r.problems);
  return config;
}
