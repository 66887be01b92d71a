/**
 * Process metrics in the Prometheus text exposition format (version 0.0.4): requests by surface
 * and outcome, a latency histogram per surface, queue depth, Discord connection state. Both doors
 * record into one Metrics object; GET /metrics renders it.
 */
import { errorFacts } from './errors.ts';
import type { QueueStats } from './queue.ts';

/** Where a request came in. */
export type Surface = 'slash' | 'context_menu' | 'auto_detect' | 'web' | 'admin';

/** How a request that failed ended, in a few stable words (label values); src/errors.ts maps each error code to one. */
export type ErrorOutcome = 'bad_input' | 'too_large' | 'host_not_allowed' | 'download_failed' | 'busy' | 'cooldown' | 'shutting_down' | 'error';

/** How a request ended (label values). */
export type Outcome = 'ok' | 'forbidden' | ErrorOutcome;

/** Latency buckets in seconds: a cached small photo to a slow three-backbone run. */
export const LATENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const;

interface Histogram {
  counts: number[];
  sum: number;
  count: number;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labels(pairs: Record<string, string>): string {
  const parts = Object.entries(pairs).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

function num(n: number): string {
  if (n === Infinity) return '+Inf';
  return Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(12)));
}

export class Metrics {
  private readonly requests = new Map<string, number>();
  private readonly latency = new Map<Surface, Histogram>();
  private readonly labelsCount = new Map<string, number>();
  private queue: () => QueueStats | null = () => null;
  private discord: () => boolean | null = () => null;

  /** Where the queue gauges come from. */
  watchQueue(stats: () => QueueStats): void {
    this.queue = stats;
  }

  /** Where the Discord connection gauge comes from (null: no bot configured). */
  watchDiscord(connected: () => boolean | null): void {
    this.discord = connected;
  }

  /** One finished request. */
  observe(surface: Surface, outcome: Outcome, seconds: number): void {
    const key = `${surface}\u0000${outcome}`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
    let h = this.latency.get(surface);
    if (!h) {
      h = { counts: LATENCY_BUCKETS.map(() => 0), sum: 0, count: 0 };
      this.latency.set(surface, h);
    }
    LATENCY_BUCKETS.forEach((b, i) => {
      if (seconds <= b) h!.counts[i]!++;
    });
    h.sum += seconds;
    h.count++;
  }

  /** One photo classified, by verdict. */
  classified(label: 'dog' | 'cat' | 'neither'): void {
    this.labelsCount.set(label, (this.labelsCount.get(label) ?? 0) + 1);
  }

  render(): string {
    const out: string[] = [];
    out.push('# HELP catdog_requests_total Requests by surface and outcome.');
    out.push('# TYPE catdog_requests_total counter');
    for (const [key, n] of [...this.requests].sort(([a], [b]) => a.localeCompare(b))) {
      const [surface, outcome] = key.split('\u0000') as [string, string];
      out.push(`catdog_requests_total${labels({ surface, outcome })} ${n}`);
    }
    out.push('# HELP catdog_request_duration_seconds Time from request to answer, by surface.');
    out.push('# TYPE catdog_request_duration_seconds histogram');
    for (const [surface, h] of [...this.latency].sort(([a], [b]) => a.localeCompare(b))) {
      LATENCY_BUCKETS.forEach((b, i) => {
        out.push(`catdog_request_duration_seconds_bucket${labels({ surface, le: num(b) })} ${h.counts[i]}`);
      });
      out.push(`catdog_request_duration_seconds_bucket${labels({ surface, le: '+Inf' })} ${h.count}`);
      out.push(`catdog_request_duration_seconds_sum${labels({ surface })} ${num(h.sum)}`);
      out.push(`catdog_request_duration_seconds_count${labels({ surface })} ${h.count}`);
    }
    out.push('# HELP catdog_classifications_total Photos classified, by verdict.');
    out.push('# TYPE catdog_classifications_total counter');
    for (const label of ['cat', 'dog', 'neither']) {
      out.push(`catdog_classifications_total${labels({ label })} ${this.labelsCount.get(label) ?? 0}`);
    }
    const q = this.queue();
    if (q) {
      out.push('# HELP catdog_queue_depth Jobs waiting for the classifier.');
      out.push('# TYPE catdog_queue_depth gauge');
      out.push(`catdog_queue_depth ${q.waiting}`);
      out.push('# HELP catdog_queue_running Jobs being classified now.');
      out.push('# TYPE catdog_queue_running gauge');
      out.push(`catdog_queue_running ${q.running}`);
      out.push('# HELP catdog_queue_capacity Waiting places in the queue.');
      out.push('# TYPE catdog_queue_capacity gauge');
      out.push(`catdog_queue_capacity ${q.size}`);
    }
    const d = this.discord();
    out.push('# HELP catdog_discord_connected 1 when the bot is connected to Discord, 0 when not (absent: no token).');
    out.push('# TYPE catdog_discord_connected gauge');
    if (d !== null) out.push(`catdog_discord_connected ${d ? 1 : 0}`);
    return `${out.join('\n')}\n`;
  }
}

/** The outcome label for an error thrown by a door's work. */
export function outcomeOf(err: unknown): Outcome {
  return errorFacts(err).outcome;
}
