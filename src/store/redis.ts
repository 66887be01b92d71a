/**
 * The state several processes share, atomic in Redis (STORE_URL=redis://…, and every role of a
 * distributed deployment): per-user token buckets in one Lua step with SET … PX (one bucket per user
 * whichever gateway shard sees the request), per-guild counters with HINCRBY, job ids
 * with INCR and job records updated under WATCH/MULTI (optimistic, retried), so two processes
 * never hand out the same id or lose each other's update. Settings stay on keyv (src/store/index.ts).
 */
import { Redis } from 'ioredis';
import type { JobRecord, JobRepository } from '../jobs/types.ts';
import type { BucketOptions, RateCheck, RateLimiter } from '../rate-limit.ts';
import type { GuildStats, Stats } from './index.ts';

const P = 'catdog:';

/**
 * The token bucket (src/rate-limit.ts) in one atomic step (a Lua script runs alone in Redis), so
 * two gateway shards racing for a user's last token cannot both spend it. The bucket is kept as
 * "tokens:at" and expires (PX) once it would be full again.
 */
const TAKE_TOKEN = `
local burst = tonumber(ARGV[2])
local refill = tonumber(ARGV[3])
local now = tonumber(ARGV[1])
local tokens = burst
local v = redis.call('GET', KEYS[1])
if v then
  local t, at = string.match(v, '^([^:]+):(%d+)$')
  tokens = math.min(burst, tonumber(t) + math.max(0, now - tonumber(at)) / refill)
end
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) * refill)
end
local ttl = math.max(1, math.ceil((burst - tokens) * refill))
redis.call('SET', KEYS[1], string.format('%.17g', tokens) .. ':' .. now, 'PX', ttl)
return {allowed, wait}
`;

export class RedisRateLimiter implements RateLimiter {
  constructor(
    private readonly redis: Redis,
    private readonly o: BucketOptions,
    private readonly prefix: string,
  ) {}

  async take(key: string, now = Date.now()): Promise<RateCheck> {
    if (this.o.burst <= 0) return { allowed: true };
    const [allowed, retryAfterMs] = (await this.redis.eval(
      TAKE_TOKEN,
      1,
      `${P}${this.prefix}${key}`,
      String(Math.floor(now)),
      String(this.o.burst),
      String(this.o.refillMs),
    )) as number[];
    return allowed ? { allowed: true } : { allowed: false, retryAfterMs: retryAfterMs! };
  }
}

export class RedisStats implements Stats {
  constructor(private readonly redis: Redis) {}

  async get(guildId: string): Promise<GuildStats> {
    const h = await this.redis.hgetall(`${P}stats:${guildId}`);
    return { total: Number(h.total ?? 0), dog: Number(h.dog ?? 0), cat: Number(h.cat ?? 0), neither: Number(h.neither ?? 0) };
  }

  async record(guildId: string, label: 'dog' | 'cat' | 'neither'): Promise<GuildStats> {
    const key = `${P}stats:${guildId}`;
    await this.redis.multi().hincrby(key, 'total', 1).hincrby(key, label, 1).exec();
    return this.get(guildId);
  }
}

export class RedisJobRecords implements JobRepository {
  static readonly KEEP_JOBS = 100;

  /** WATCH belongs to the connection: this process's transactions take turns on it. */
  private turn: Promise<unknown> = Promise.resolve();

  constructor(private readonly redis: Redis) {}

  async create(record: Omit<JobRecord, 'id'>): Promise<JobRecord> {
    const id = String(await this.redis.incr(`${P}jobs:seq`));
    const full: JobRecord = { id, ...record };
    // Recent jobs: a sorted set scored by id, so the order is the ids' whatever the races.
    await this.redis.multi().set(`${P}job:${id}`, JSON.stringify(full)).zadd(`${P}jobs:recent`, Number(id), id).exec();
    const old = await this.redis.zrange(`${P}jobs:recent`, 0, -(RedisJobRecords.KEEP_JOBS + 1));
    if (old.length) {
      await this.redis
        .multi()
        .zrem(`${P}jobs:recent`, ...old)
        .del(...old.map((o) => `${P}job:${o}`))
        .exec();
    }
    return full;
  }

  async get(id: string): Promise<JobRecord | null> {
    const v = await this.redis.get(`${P}job:${id}`);
    return v ? (JSON.parse(v) as JobRecord) : null;
  }

  update(id: string, patch: Partial<JobRecord> | ((r: JobRecord) => Partial<JobRecord>)): Promise<JobRecord | null> {
    const next = this.turn.then(() => this.transaction(id, patch));
    this.turn = next.catch(() => undefined);
    return next;
  }

  /** Read, patch, write under WATCH: EXEC fails when another process wrote in between, and we read again. */
  private async transaction(id: string, patch: Partial<JobRecord> | ((r: JobRecord) => Partial<JobRecord>)): Promise<JobRecord | null> {
    const key = `${P}job:${id}`;
    for (let attempt = 0; attempt < 50; attempt++) {
      await this.redis.watch(key);
      const v = await this.redis.get(key);
      if (!v) {
        await this.redis.unwatch();
        return null;
      }
      const cur = JSON.parse(v) as JobRecord;
      const next: JobRecord = { ...cur, ...(typeof patch === 'function' ? patch(cur) : patch), id };
      const done = await this.redis.multi().set(key, JSON.stringify(next)).exec();
      if (done) return next; // null: someone else wrote in between; read again
    }
    throw new Error(`job #${id}: could not update the record (too many concurrent writers)`);
  }

  async recent(limit = 10): Promise<JobRecord[]> {
    const ids = await this.redis.zrevrange(`${P}jobs:recent`, 0, Math.min(limit, RedisJobRecords.KEEP_JOBS) - 1);
    const out: JobRecord[] = [];
    for (const id of ids) {
      const r = await this.get(id);
      if (r) out.push(r);
    }
    return out;
  }
}

/** One connection for the atomic repositories (commands fail at once while Redis is down: the caller answers with an error, nothing hangs). */
export function stateConnection(url: string): Redis {
  return new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true });
}
