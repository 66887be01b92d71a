/**
 * State behind small typed repositories, on keyv: embedded SQLite by default (a file under
 * DATA_DIR), Redis with STORE_URL=redis://… and the same behaviour. Holds guild and channel
 * settings, per-guild counters and per-user rate-limit buckets; never photos or attachment URLs (Discord's
 * CDN links are signed and expire, and photos are not ours to keep), and the records of admin jobs.
 *
 * Read-modify-write updates are serialised per key inside the process; on Redis the state that
 * several processes share (rate-limit buckets, counters, job ids and records) is atomic in Redis itself
 * (src/store/redis.ts). A SQLite file is for one process (the embedded default) only.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Keyv from 'keyv';
import KeyvSqlite from '@keyv/sqlite';
import type { StoreConfig } from '../config.ts';
import type { JobRecord, JobRepository } from '../jobs/types.ts';
import { KeyvRateLimiter, type BucketOptions, type RateLimiter } from '../rate-limit.ts';

export type AnswerStyle = 'reply' | 'react';

export interface GuildSettings {
  /** Auto-detect in every channel of the guild (a channel setting overrides it). */
  autoDetect: boolean;
  /** How auto-detect answers: a reply with the verdict, or just a 🐶/🐱 reaction. */
  style: AnswerStyle;
}

export interface ChannelSettings {
  /** true/false overrides the guild's setting; null follows it. */
  autoDetect: boolean | null;
}

export interface GuildStats {
  total: number;
  dog: number;
  cat: number;
  neither: number;
}

export const DEFAULT_GUILD_SETTINGS: Readonly<GuildSettings> = Object.freeze({ autoDetect: false, style: 'reply' });
const EMPTY_STATS: Readonly<GuildStats> = Object.freeze({ total: 0, dog: 0, cat: 0, neither: 0 });

/** Serialises async updates per key. */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    try {
      return await next;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

/** Per-guild verdict counters. */
export interface Stats {
  get(guildId: string): Promise<GuildStats>;
  record(guildId: string, label: 'dog' | 'cat' | 'neither'): Promise<GuildStats>;
}

export class SettingsRepo {
  constructor(
    private readonly kv: Keyv,
    private readonly mutex: KeyedMutex,
  ) {}

  async guild(guildId: string): Promise<GuildSettings> {
    const v = (await this.kv.get(`guild:${guildId}`)) as Partial<GuildSettings> | undefined;
    return { ...DEFAULT_GUILD_SETTINGS, ...v };
  }

  async updateGuild(guildId: string, patch: Partial<GuildSettings>): Promise<GuildSettings> {
    return this.mutex.run(`guild:${guildId}`, async () => {
      const next = { ...(await this.guild(guildId)), ...patch };
      await this.kv.set(`guild:${guildId}`, next);
      return next;
    });
  }

  async channel(channelId: string): Promise<ChannelSettings> {
    const v = (await this.kv.get(`channel:${channelId}`)) as Partial<ChannelSettings> | undefined;
    return { autoDetect: v?.autoDetect ?? null };
  }

  async setChannel(channelId: string, settings: ChannelSettings): Promise<void> {
    if (settings.autoDetect === null) await this.kv.delete(`channel:${channelId}`);
    else await this.kv.set(`channel:${channelId}`, settings);
  }

  /** Whether auto-detect is on in this channel, and how to answer there. */
  async autoDetect(guildId: string, channelId: string): Promise<{ enabled: boolean; style: AnswerStyle }> {
    const [g, c] = await Promise.all([this.guild(guildId), this.channel(channelId)]);
    return { enabled: c.autoDetect ?? g.autoDetect, style: g.style };
  }
}

export class StatsRepo implements Stats {
  constructor(
    private readonly kv: Keyv,
    private readonly mutex: KeyedMutex,
  ) {}

  async get(guildId: string): Promise<GuildStats> {
    const v = (await this.kv.get(`stats:${guildId}`)) as Partial<GuildStats> | undefined;
    return { ...EMPTY_STATS, ...v };
  }

  async record(guildId: string, label: 'dog' | 'cat' | 'neither'): Promise<GuildStats> {
    return this.mutex.run(`stats:${guildId}`, async () => {
      const s = await this.get(guildId);
      const next: GuildStats = { ...s, total: s.total + 1, [label]: s[label] + 1 };
      await this.kv.set(`stats:${guildId}`, next);
      return next;
    });
  }
}

/**
 * Job records (src/jobs): `job:<id>` per record and the sequence `jobs:seq` that hands out ids.
 * There is no separate list of recent ids: the list is the sequence itself (ids from `seq` down,
 * at most KEEP_JOBS of them, older records deleted). So creating a job is two writes that cannot
 * disagree: a process killed between them leaves at most an unused id, never a record that
 * /jobs and recovery do not see.
 */
export class JobRepo implements JobRepository {
  static readonly KEEP_JOBS = 100;

  constructor(
    private readonly kv: Keyv,
    private readonly mutex: KeyedMutex = new KeyedMutex(),
  ) {}

  private async seq(): Promise<number> {
    return ((await this.kv.get('jobs:seq')) as number | undefined) ?? 0;
  }

  /** Stores a new record with the next id; returns it. */
  async create(record: Omit<JobRecord, 'id'>): Promise<JobRecord> {
    return this.mutex.run('jobs:index', async () => {
      // The id is taken first: a crash after this line wastes an id and loses nothing.
      const seq = (await this.seq()) + 1;
      await this.kv.set('jobs:seq', seq);
      const full: JobRecord = { id: String(seq), ...record };
      await this.kv.set(`job:${full.id}`, full);
      const old = seq - JobRepo.KEEP_JOBS;
      if (old >= 1) await this.kv.delete(`job:${old}`);
      return full;
    });
  }

  async get(id: string): Promise<JobRecord | null> {
    return ((await this.kv.get(`job:${id}`)) as JobRecord | undefined) ?? null;
  }

  /** Applies `patch` (or a function of the current record) and returns the new record; null when unknown. */
  async update(id: string, patch: Partial<JobRecord> | ((r: JobRecord) => Partial<JobRecord>)): Promise<JobRecord | null> {
    return this.mutex.run(`job:${id}`, async () => {
      const cur = await this.get(id);
      if (!cur) return null;
      const next: JobRecord = { ...cur, ...(typeof patch === 'function' ? patch(cur) : patch), id };
      await this.kv.set(`job:${id}`, next);
      return next;
    });
  }

  /** The most recent records, newest first (read from the sequence down, gaps skipped). */
  async recent(limit = 10): Promise<JobRecord[]> {
    const seq = await this.seq();
    const out: JobRecord[] = [];
    for (let id = seq; id >= 1 && id > seq - JobRepo.KEEP_JOBS && out.length < limit; id--) {
      const r = await this.get(String(id));
      if (r) out.push(r);
    }
    return out;
  }
}

interface SharedRepos {
  stats: Stats;
  jobs: JobRepository;
  rateLimiter: (options: BucketOptions, prefix: string) => RateLimiter;
}

export class Store {
  readonly settings: SettingsRepo;
  readonly stats: Stats;
  readonly jobs: JobRepository;
  private closed = false;

  private constructor(
    private readonly kv: Keyv,
    readonly description: string,
    private readonly redis: import('ioredis').Redis | null = null,
    private readonly shared: SharedRepos | null = null,
  ) {
    const mutex = new KeyedMutex();
    this.settings = new SettingsRepo(kv, mutex);
    this.stats = shared?.stats ?? new StatsRepo(kv, mutex);
    this.jobs = shared?.jobs ?? new JobRepo(kv, mutex);
  }

  /** Opens the store and checks it answers (so a bad STORE_URL fails at startup, not on first use). */
  static async open(config: StoreConfig, log: (line: string) => void = () => {}): Promise<Store> {
    let kv: Keyv;
    let description: string;
    let redis: import('ioredis').Redis | null = null;
    let shared: SharedRepos | null = null;
    if (config.kind === 'sqlite') {
      mkdirSync(dirname(config.path), { recursive: true });
      kv = new Keyv({ store: new KeyvSqlite({ uri: config.url, table: 'catdog', busyTimeout: 10_000 }), namespace: 'catdog' });
      description = `SQLite ${config.path}`;
    } else {
      const { default: KeyvRedis } = await import('@keyv/redis');
      const store = new KeyvRedis(config.url, { throwOnConnectError: true, connectionTimeout: 5_000 });
      kv = new Keyv({ store, namespace: 'catdog', useKeyPrefix: false });
      description = `Redis ${redactUrl(config.url)}`;
      const r = await import('./redis.ts');
      redis = r.stateConnection(config.url);
      redis.on('error', () => undefined); // reported by the commands that fail
      const conn = redis;
      shared = {
        stats: new r.RedisStats(conn),
        jobs: new r.RedisJobRecords(conn),
        rateLimiter: (options, prefix) => new r.RedisRateLimiter(conn, options, prefix),
      };
    }
    kv.on('error', (err: unknown) => log(`store error: ${err instanceof Error ? err.message : String(err)}`));
    const store = new Store(kv, description, redis, shared);
    try {
      await redis?.connect();
      await kv.get('ping');
    } catch (err) {
      await store.close().catch(() => undefined);
      throw new Error(`Could not open the store (${description}): ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    return store;
  }

  /** A per-key token bucket kept in this store (src/rate-limit.ts), e.g. the bot's per-user limit. */
  rateLimiter(options: BucketOptions, prefix = 'rate:'): RateLimiter {
    // On Redis, one atomic step in Redis itself, so several gateway processes share one bucket per user.
    return this.shared?.rateLimiter(options, prefix) ?? new KeyvRateLimiter(this.kv, options, prefix);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.kv.disconnect();
    if (this.redis && this.redis.status !== 'end') await this.redis.quit().catch(() => this.redis!.disconnect());
  }

  get isClosed(): boolean {
    return this.closed;
  }
}

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'redis://…';
  }
}
