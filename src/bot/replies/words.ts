/** The bot's words for errors and refusals: the shared error words (src/error-words.ts) with the running job for job_busy. */
import { describeError as describeErrorWords, ERROR_WORDS } from '../../error-words.ts';
import { JobBusy } from '../../jobs/runner.ts';
import { jobLine } from './jobs.ts';

/** Any error, in words for the person who asked: the shared words, and which job is running for job_busy. */
export function describeError(err: unknown): string {
  return describeErrorWords(err, {
    job_busy: (e) =>
      e instanceof JobBusy && e.running
        ? `⏳ One job at a time, and this one is running: ${jobLine(e.running)}. Wait for it, or cancel it (its Cancel button, or see \`/jobs\`).`
        : ERROR_WORDS.job_busy(),
  });
}

export function cooldownWords(retryAfterMs: number): string {
  const s = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return `⏳ Easy there! You can ask me again in ${s} s.`;
}

export function adminRefusalWords(admins: { roleIds: readonly string[]; homeGuildId: string | null }): string {
  const home = admins.homeGuildId
    ? admins.roleIds.length
      ? ' and the admin roles of its home server'
      : ' and the Administrators of its home server'
    : '';
  return `🔒 Only the bot's admins can do that (its owner, the people the owner listed${home}). Your attempt has been logged.`;
}
