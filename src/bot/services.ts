/**
 * What the bot's commands and events are given: configuration, the store, the queued classifier,
 * metrics, the shutdown gate and a log. Built once in main.ts (and in tests).
 */
import type { Config } from '../config.ts';
import type { QueuedClassifier, WorkGate } from '../queue.ts';
import type { Store } from '../store/index.ts';
import type { Metrics } from '../web/metrics.ts';

export type Log = (line: string) => void;

export interface BotServices {
  config: Config;
  store: Store;
  classifier: QueuedClassifier;
  metrics: Metrics;
  /** Work in flight; closed on SIGTERM so no new work starts. */
  gate: WorkGate;
  log: Log;
}
