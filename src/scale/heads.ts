/**
 * The active head, where every machine can read it: Redis `catdog:head` = {id, file} (a head is
 * small: a few thousand numbers), and a message on the `catdog:head` channel when it changes.
 * Every inference worker swaps to it on the message (and checks every few seconds anyway, in case
 * a message was missed while it reconnected), so a promotion reaches them all within seconds,
 * with no restart and no failed request: a request in flight finishes with the head it started with.
 */
import type { Redis } from 'ioredis';
import type { LiveHead } from '../jobs/models.ts';
import { headId } from '../model/classifier.ts';
import { headPrecisions, type Head, type HeadFile } from '../model/head.ts';
import type { BackboneName, Precisions } from '../model/types.ts';
import { HEAD_CHANNEL, HEAD_KEY, WORKER_KEY_PREFIX } from './connections.ts';

export interface PublishedHead {
  id: string;
  file: HeadFile;
}

export async function readHead(redis: Redis): Promise<PublishedHead | null> {
  const v = await redis.get(HEAD_KEY);
  return v ? (JSON.parse(v) as PublishedHead) : null;
}

/** Publishes `head` as the one every worker answers with. `onlyIfNone`: at startup, do not replace a published one. */
export async function publishHead(redis: Redis, head: Head, o: { onlyIfNone?: boolean } = {}): Promise<boolean> {
  const value = JSON.stringify({ id: headId(head), file: head.file } satisfies PublishedHead);
  const set = o.onlyIfNone ? await redis.set(HEAD_KEY, value, 'NX') : await redis.set(HEAD_KEY, value);
  if (set !== 'OK') return false;
  await redis.publish(HEAD_CHANNEL, headId(head));
  return true;
}

export interface WorkerBeat {
  name: string;
  host: string;
  pid: number;
  model: string | null;
  backbones: BackboneName[];
  /** The precision each backbone runs in (absent from workers of before it was sent). */
  precisions?: Precisions;
  threads: number | null;
  at: string;
}

/** The heartbeats under `prefix` alive now (each expires when its process dies), by name. */
export async function liveBeats<T extends { name: string }>(redis: Redis, prefix: string): Promise<T[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 100);
    cursor = next;
    keys.push(...found);
  } while (cursor !== '0');
  if (!keys.length) return [];
  const values = await redis.mget(...keys);
  return values
    .filter((v): v is string => v !== null)
    .map((v) => JSON.parse(v) as T)
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** The inference workers alive now (their heartbeats), by name. */
export function liveWorkers(redis: Redis): Promise<WorkerBeat[]> {
  return liveBeats<WorkerBeat>(redis, WORKER_KEY_PREFIX);
}

/**
 * The live head as the gateways see it (for src/jobs/models.ts): promotion and rollback publish
 * the head; what answers is what was published.
 */
export class RedisLiveHead implements LiveHead {
  private published: string | null = null;
  private known: BackboneName[] = [];
  private knownPrecisions: Precisions | null = null;

  /**
   * `o.fallback`: the backbones this process runs itself (the jobs worker's own configured ones),
   * taken when no inference worker is alive and no head is published (a first promotion).
   */
  constructor(
    private readonly redis: Redis,
    private readonly o: { fallback?: () => BackboneName[] } = {},
  ) {}

  /** Reads what is published and which backbones the workers run (else the last known, else the fallback). */
  async refresh(): Promise<void> {
    const head = await readHead(this.redis);
    this.published = head?.id ?? null;
    const w = await liveWorkers(this.redis);
    this.known = w[0]?.backbones ?? head?.file.backbones ?? (this.known.length ? this.known : (this.o.fallback?.() ?? []));
    // What the workers run, else what the published head was trained on (the workers took it).
    this.knownPrecisions = w[0]?.precisions ?? (head ? headPrecisions(head.file) : this.knownPrecisions);
  }

  get backbones(): BackboneName[] {
    return this.known;
  }

  get precisions(): Precisions | null {
    return this.knownPrecisions;
  }

  info(): { model: string | null } {
    return { model: this.published };
  }

  async answering(): Promise<{ name: string; model: string | null }[]> {
    return (await liveWorkers(this.redis)).map((w) => ({ name: w.name, model: w.model }));
  }

  async setHead(head: Head): Promise<void> {
    await this.refresh();
    if (this.known.length) head.checkBackbones(this.known);
    if (this.knownPrecisions) head.checkPrecision(this.knownPrecisions);
    await publishHead(this.redis, head);
    this.published = headId(head);
  }
}
