/**
 * What every request to the bot goes through, whichever door it came by (a command, a button, a
 * message seen by auto-detect): the shutdown gate, the per-user rate limit (every refusal told when to try again),
 * metrics for how it ended, and a last-resort log line when answering itself failed (Discord
 * unreachable, interaction expired…), since nothing is left to tell the user then.
 */
import { ShuttingDown } from '../errors.ts';
import type { Outcome, Surface } from '../metrics.ts';
import { cooldownWords } from './replies/words.ts';
import type { BotServices } from './services.ts';

export interface GuardOptions {
  surface: Surface;
  /** Tells the person the bot is restarting (counted as shutting_down). */
  onClosed(err: ShuttingDown): Promise<unknown>;
  /** Logs an error nothing else caught (counted as error). */
  onFault(err: unknown): void;
}

export class Guard {
  constructor(private readonly services: BotServices) {}

  /** Runs `body` inside the gate and records its outcome (and time) for `surface`. */
  async run(o: GuardOptions, body: () => Promise<Outcome>): Promise<void> {
    const started = performance.now();
    const { gate, metrics } = this.services;
    let outcome: Outcome = 'ok';
    let leave: (() => void) | null = null;
    try {
      try {
        leave = gate.enter();
      } catch (err) {
        if (!(err instanceof ShuttingDown)) throw err;
        outcome = 'shutting_down';
        await o.onClosed(err);
        return;
      }
      outcome = await body();
    } catch (err) {
      outcome = 'error';
      o.onFault(err);
    } finally {
      metrics.observe(o.surface, outcome, (performance.now() - started) / 1000);
      leave?.();
    }
  }

  /**
   * The per-user rate limit (a token bucket, services.userRate: RATE_BURST in a row, then one
   * every RATE_REFILL_SECONDS): true when `userId` may go on. Otherwise the refusal is always
   * told (`tell`, with when to try again): nothing is dropped silently.
   */
  async cooldown(userId: string, tell: (words: string) => Promise<unknown>): Promise<boolean> {
    const check = await this.services.userRate.take(userId);
    if (check.allowed) return true;
    await tell(cooldownWords(check.retryAfterMs));
    return false;
  }
}
