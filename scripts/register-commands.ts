/**
 * `npm run register`: registers the slash and context-menu commands, in DISCORD_GUILD_ID when set
 * (development: changes show at once) or globally. Idempotent: nothing is written when Discord
 * already has the same definitions. `npm start` does the same at startup.
 */
import { REST } from 'discord.js';
import dotenv from 'dotenv';
import { commands } from '../commands/index.ts';
import { syncCommands } from '../src/bot/register.ts';
import { loadConfig } from '../src/config.ts';
import { ConfigError } from '../src/errors.ts';

dotenv.config({ quiet: true });

async function run(): Promise<number> {
  const config = loadConfig();
  const { token, appId, guildId, apiUrl, cdnUrl } = config.discord;
  const missing = [!token && 'DISCORD_TOKEN', !appId && 'DISCORD_APP_ID'].filter(Boolean);
  if (missing.length) {
    process.stderr.write(`Registering commands needs ${missing.join(' and ')} (see .env.example).\n`);
    return 2;
  }
  const rest = new REST({ ...(apiUrl ? { api: apiUrl } : {}), ...(cdnUrl ? { cdn: cdnUrl } : {}) }).setToken(token!);
  const result = await syncCommands(
    rest,
    appId!,
    guildId,
    commands.map((c) => c.definition),
  );
  process.stdout.write(
    `${result.changed ? 'Registered' : 'Already up to date:'} ${result.count} command(s) (${result.scope}): ${commands
      .map((c) => (c.kind === 'chat' ? `/${c.definition.name}` : `"${c.definition.name}"`))
      .join(', ')}\n`,
  );
  return 0;
}

try {
  process.exitCode = await run();
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`Could not register the commands: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
