/**
 * Per-user (and per web client) rate limits: a token bucket that allows a burst (RATE_BURST
 * photos in a row) and refills one token every RATE_REFILL_SECONDS. A refused take says how long
 * until the next token, so every refusal can tell the person when to try again.
 *
 * One interface, two implementations here: in memory (the web door's per-client limit, checked
 * before a request body is read) and on the keyv store (the bot's per-user limit: SQLite or
 * Redis, so it holds across restarts). A Redis-native one (scale-out) only has to implement
 * RateLimiter.
 */
import type Keyv from 'keyv';

export interface BucketOptions {
  /** Tokens a full bucket holds (requests allowed in a row); 0 turns the limit off. */
  burst: number;
  /** Milliseconds to refill one token. */
  refillMs: number;
}

export type RateCheck = { allowed: true } | { allowed: false; retryAfterMs: number };

export interface RateLimiter {
  /** Takes one token for `key` when there is one; else says how long until there is. */
  take(key: string, now?: number): Promise<RateCheck>;
}

interface BucketState {
  /** Tokens at time `at` (fractional while refilling). */
  tokens: number;
  at: number;
}

/** The bucket's arithmetic: the state after `now`'s take and the answer. */
export function takeToken(state: BucketState | undefined, o: BucketOptions, now: number): { next: BucketState; check: RateCheck } {
  const tokens = state ? Math.min(o.burst, state.tokens + Math.max(0, now - state.at) / o.refillMs) : o.burst;
  if (tokens >= 1) return { next: { tokens: tokens - 1, at: now }, check: { allowed: true } };
  return { next: { tokens, at: now }, check: { allowed: false, retryAfterMs: Math.ceil((1 - tokens) * o.refillMs) } };
}

/** Milliseconds until a bucket in `state` is full again (when it can be forgotten). */
function msToFull(state: BucketState, o: BucketOptions): number {
  return Math.ceil((o.burst - state.tokens) * o.refillMs);
}

const ALLOWED: RateCheck = { allowed: true };

/** In memory, for one process; at most `maxKeys` buckets (full ones are forgotten first). */
export class MemoryRateLimiter implements RateLimiter {
  private readonly buckets = new Map<string, BucketState>();

  constructor(
    private readonly o: BucketOptions,
    private readonly maxKeys = 50_000,
  ) {}

  takeSync(key: string, now = Date.now()): RateCheck {
    if (this.o.burst <= 0) return ALLOWED;
    const { next, check } = takeToken(this.buckets.get(key), this.o, now);
    this.buckets.delete(key); // re-inserted last: the map stays in least-recently-used order
    this.buckets.set(key, next);
    if (this.buckets.size > this.maxKeys) this.evict(now);
    return check;
  }

  async take(key: string, now = Date.now()): Promise<RateCheck> {
    return this.takeSync(key, now);
  }

  private evict(now: number): void {
    for (const [k, s] of this.buckets) {
      if (this.buckets.size <= this.maxKeys * 0.9) break;
      // Oldest first; a full bucket (or the least recently used one) is the same as no bucket.
      if (s.at + msToFull(s, this.o) <= now || this.buckets.size > this.maxKeys) this.buckets.delete(k);
    }
  }
}

/**
 * On the keyv store (`<prefix><key>`, expiring when the bucket would be full again). Takes of one
 * key are serialised in this process; across processes on Redis a Redis-native limiter is the one
 * to use (two processes may then both spend the last token).
 */
export class KeyvRateLimiter implements RateLimiter {
  private readonly tails = new Map<string, Promise<unknown>>();

  constructor(
    private readonly kv: Keyv,
    private readonly o: BucketOptions,
    private readonly prefix = 'rate:',
  ) {}

  async take(key: string, now = Date.now()): Promise<RateCheck> {
    if (this.o.burst <= 0) return ALLOWED;
    const k = `${this.prefix}${key}`;
    const prev = this.tails.get(k) ?? Promise.resolve();
    const run = async (): Promise<RateCheck> => {
      const { next, check } = takeToken((await this.kv.get(k)) as BucketState | undefined, this.o, now);
      await this.kv.set(k, next, Math.max(1000, msToFull(next, this.o)));
      return check;
    };
    const result = prev.then(run, run);
    const tail = result.catch(() => undefined);
    this.tails.set(k, tail);
    try {
      return await result;
    } finally {
      if (this.tails.get(k) === tail) this.tails.delete(k);
    }
  }
}
