/**
 * What every request to the bot goes through, whichever door it came by (a command, a button, a
 * message seen by auto-detect): the shutdown gate, the per-user cooldown (told once per window),
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
   * The per-user cooldown: true when `userId` may go on. Otherwise the first refused try in a
   * window is told (`tell`, with the words), the others only acknowledged (`quiet`).
   */
  async cooldown(userId: string, tell: (words: string) => Promise<unknown>, quiet: () => Promise<unknown>): Promise<boolean> {
    const { config, store } = this.services;
    if (config.cooldownSeconds <= 0) return true;
    const check = await store.cooldowns.take(userId, config.cooldownSeconds);
    if (check.allowed) return true;
    if (check.notify) await tell(cooldownWords(check.retryAfterMs));
    else await quiet();
    return false;
  }
}
