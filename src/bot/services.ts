/**
 * What the bot's commands and events are given: configuration, the store, the queued classifier,
 * metrics, the shutdown gate and a log. Built once in main.ts (and in tests).
 */
import type { Config } from '../config.ts';
import type { RateLimiter } from '../rate-limit.ts';
import type { Admins } from './admin.ts';
import type { Models } from '../jobs/models.ts';
import type { Jobs } from '../jobs/runner.ts';
import type { ClassifyDoor, WorkGate } from '../queue.ts';
import type { Store } from '../store/index.ts';
import type { Metrics } from '../metrics.ts';

export type Log = (line: string) => void;

export interface BotServices {
  config: Config;
  store: Store;
  classifier: ClassifyDoor;
  metrics: Metrics;
  /** Work in flight; closed on SIGTERM so no new work starts. */
  gate: WorkGate;
  log: Log;
  /** Who the admins are (the owner is filled in when the bot has logged in). */
  admins: Admins;
  /** The per-user token bucket for photo requests (RATE_BURST, RATE_REFILL_SECONDS). */
  userRate: RateLimiter;
  /** Admin operations (jobs, models); absent when the classifier cannot train (a test double). */
  admin?: AdminServices;
}

export interface AdminServices {
  jobs: Jobs;
  /**
   * Distributed (src/scale/jobs.ts): the jobs worker edits each job's message (a channel message,
   * not the interaction's token, which expires after 15 min); the door posts it and says where.
   */
  jobMessages?: { attach(jobId: string, message: { channelId: string; messageId: string }): Promise<void> };
  models: Models;
  /** Least time between two edits of a job's progress message (default 5 s). */
  progressIntervalMs: number;
  /** How long an interaction's token may be used to edit its reply (Discord: 15 min); then the channel message is edited. */
  tokenTtlMs: number;
  /** Message edits still to make for jobs (awaited at shutdown). */
  background: Set<Promise<void>>;
}
