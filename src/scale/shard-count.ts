/**
 * How many gateway shards to start. SHARD_COUNT=<n> is used as it is. SHARD_COUNT=auto asks
 * Discord (GET /gateway/bot) ourselves, through the same REST base the client uses
 * (DISCORD_API_URL): discord.js's ShardingManager with totalShards 'auto' asks discord.com
 * directly, whatever `rest.api` says. The answer also says how many logins are left today
 * (session_start_limit.remaining: fewer than the shards and the start is refused with when they
 * come back, instead of shards failing one by one) and how many shards may log in at once
 * (max_concurrency buckets of one login per 5 s each: the spawn delay is divided by it).
 */
import { REST, Routes, type RESTGetAPIGatewayBotResult } from 'discord.js';
import type { Log } from '../bot/services.ts';
import type { Config } from '../config.ts';

export interface ShardPlan {
  total: number;
  /** Wait between starting two shard processes. */
  spawnDelayMs: number;
  /** The number came from Discord (SHARD_COUNT=auto). */
  recommended: boolean;
}

const ASK_TIMEOUT_MS = 15_000;

export async function resolveShards(config: Config, log: Log): Promise<ShardPlan> {
  const { shards, shardSpawnDelayMs } = config.scale;
  if (shards !== 'auto') return { total: shards, spawnDelayMs: shardSpawnDelayMs, recommended: false };
  if (!config.discord.token) throw new Error('SHARD_COUNT=auto needs DISCORD_TOKEN (Discord says how many shards a bot needs only to the bot).');
  const rest = new REST({ ...(config.discord.apiUrl ? { api: config.discord.apiUrl } : {}), timeout: ASK_TIMEOUT_MS, retries: 1 }).setToken(config.discord.token);
  let answer: RESTGetAPIGatewayBotResult;
  try {
    answer = (await rest.get(Routes.gatewayBot())) as RESTGetAPIGatewayBotResult;
  } catch (err) {
    throw new Error(
      `SHARD_COUNT=auto: could not ask Discord how many shards to run (GET /gateway/bot): ${err instanceof Error ? err.message : String(err)}. Set SHARD_COUNT to a number to start without asking.`,
      { cause: err },
    );
  }
  const total = answer.shards;
  if (!Number.isInteger(total) || total < 1) throw new Error(`SHARD_COUNT=auto: Discord answered ${JSON.stringify(total)} shards, not a whole number ≥ 1.`);
  const limit = answer.session_start_limit;
  if (limit && Number.isInteger(limit.remaining) && limit.remaining < total) {
    throw new Error(
      `SHARD_COUNT=auto: Discord allows ${limit.remaining} more login(s) until the limit resets in ${Math.ceil(limit.reset_after / 60_000)} min, and SHARD_COUNT=auto needs ${total} (one per shard); start the gateway again after that.`,
    );
  }
  const concurrency = limit && Number.isInteger(limit.max_concurrency) && limit.max_concurrency > 1 ? limit.max_concurrency : 1;
  const spawnDelayMs = Math.ceil(shardSpawnDelayMs / concurrency);
  log(
    `gateway: Discord recommends ${total} shard(s)${limit ? ` (${limit.remaining} of ${limit.total} logins left today, ${concurrency} at once)` : ''}; starting them ${spawnDelayMs} ms apart`,
  );
  return { total, spawnDelayMs, recommended: true };
}
