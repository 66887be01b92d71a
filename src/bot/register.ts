/**
 * Command registration, idempotent: read what Discord has, compare it with the code's definitions,
 * and overwrite (one bulk PUT) only when they differ. In a guild (DISCORD_GUILD_ID, for
 * development: instant) or globally. Used by `npm run register` and at startup.
 */
import { Routes, type REST, type RESTPostAPIApplicationCommandsJSONBody } from 'discord.js';

export interface SyncResult {
  scope: string;
  changed: boolean;
  count: number;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** The fields we set, with Discord's defaults filled in, so our JSON and Discord's compare equal. */
function normalizeOption(o: Record<string, unknown>): Json {
  const out: Record<string, Json> = {
    type: o.type as number,
    name: o.name as string,
    description: (o.description as string) ?? '',
    required: (o.required as boolean) ?? false,
  };
  if (Array.isArray(o.choices) && o.choices.length) {
    out.choices = (o.choices as { name: string; value: string | number }[]).map((c) => ({ name: c.name, value: c.value }));
  }
  if (Array.isArray(o.options) && o.options.length) {
    out.options = (o.options as Record<string, unknown>[]).map(normalizeOption);
  }
  if (Array.isArray(o.channel_types) && o.channel_types.length) out.channel_types = [...(o.channel_types as number[])].sort();
  for (const k of ['min_value', 'max_value', 'min_length', 'max_length']) {
    if (o[k] !== undefined && o[k] !== null) out[k] = o[k] as number;
  }
  if (o.autocomplete) out.autocomplete = true;
  return out;
}

export function normalizeCommand(c: Record<string, unknown>): Json {
  return {
    type: (c.type as number) ?? 1,
    name: c.name as string,
    description: (c.description as string) ?? '',
    options: Array.isArray(c.options) ? (c.options as Record<string, unknown>[]).map(normalizeOption) : [],
    default_member_permissions: (c.default_member_permissions as string | null) ?? null,
    contexts: Array.isArray(c.contexts) ? [...(c.contexts as number[])].sort() : null,
    // Discord fills in the app's installation context when a command names none: guild install (0).
    integration_types: Array.isArray(c.integration_types) ? [...(c.integration_types as number[])].sort() : [0],
    nsfw: (c.nsfw as boolean) ?? false,
  };
}

function sortedByKey(list: Json[]): string {
  return JSON.stringify(
    [...list].sort((a, b) => {
      const ka = JSON.stringify([(a as Record<string, Json>).type, (a as Record<string, Json>).name]);
      const kb = JSON.stringify([(b as Record<string, Json>).type, (b as Record<string, Json>).name]);
      return ka.localeCompare(kb);
    }),
  );
}

/** Whether Discord's registered commands say the same as `wanted`. */
export function sameCommands(registered: readonly Record<string, unknown>[], wanted: readonly RESTPostAPIApplicationCommandsJSONBody[]): boolean {
  return (
    sortedByKey(registered.map(normalizeCommand)) ===
    sortedByKey(wanted.map((c) => normalizeCommand(c as unknown as Record<string, unknown>)))
  );
}

export async function syncCommands(
  rest: REST,
  appId: string,
  guildId: string | null,
  wanted: readonly RESTPostAPIApplicationCommandsJSONBody[],
): Promise<SyncResult> {
  const route = guildId ? Routes.applicationGuildCommands(appId, guildId) : Routes.applicationCommands(appId);
  const scope = guildId ? `guild ${guildId}` : 'global';
  const registered = (await rest.get(route)) as Record<string, unknown>[];
  if (sameCommands(registered, wanted)) return { scope, changed: false, count: registered.length };
  await rest.put(route, { body: wanted });
  return { scope, changed: true, count: wanted.length };
}
