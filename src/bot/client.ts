/**
 * The Discord client: discord.js v14 with just the intents we need (Guilds; GuildMessages and
 * MessageContent for auto-detect), REST pointed at DISCORD_API_URL when set, commands routed to the
 * one handler, messages to auto-detect, and command registration kept in sync at startup.
 */
import { Client, Events, GatewayIntentBits, Options, type ClientOptions } from 'discord.js';
import { settleShardCount } from '../config.ts';
import { AutoDetect } from './autodetect.ts';
import type { Command } from './command.ts';
import { CommandHandler } from './handler.ts';
import { syncCommands } from './register.ts';
import type { BotServices } from './services.ts';

export function botIntents(messageContent: boolean): GatewayIntentBits[] {
  const intents = [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages];
  if (messageContent) intents.push(GatewayIntentBits.MessageContent);
  return intents;
}

export function clientOptions(services: BotServices): ClientOptions {
  const { discord } = services.config;
  const rest: NonNullable<ClientOptions['rest']> = {};
  if (discord.apiUrl) rest.api = discord.apiUrl;
  if (discord.cdnUrl) rest.cdn = discord.cdnUrl;
  return {
    intents: botIntents(discord.messageContent),
    rest,
    // A shard of a ShardingManager reads its ids from the environment the manager set; any other
    // process is shard 0 of 1 (and the Bot settles SHARD_COUNT, which discord.js reads itself).
    ...(services.config.scale.managedShard ? {} : { shards: [0], shardCount: 1 }),
    // Nobody is pinged by an answer.
    allowedMentions: { parse: [], repliedUser: false },
    makeCache: Options.cacheWithLimits({
      ...Options.DefaultMakeCacheSettings,
      MessageManager: 0,
      ReactionManager: 0,
      GuildMemberManager: { maxSize: 1, keepOverLimit: (m) => m.id === m.client.user.id },
      PresenceManager: 0,
      VoiceStateManager: 0,
    }),
  };
}

export class Bot {
  readonly client: Client;
  readonly handler: CommandHandler;
  private readonly autoDetect: AutoDetect;
  private isConnected = false;
  /** Handlers started and not yet finished (each also holds the work gate while it works). */
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly services: BotServices,
    commands: readonly Command[],
    signal?: AbortSignal,
  ) {
    if (!services.config.scale.managedShard) settleShardCount(1);
    this.client = new Client(clientOptions(services));
    this.handler = new CommandHandler(commands, services, signal);
    this.autoDetect = new AutoDetect(services, signal);
    const { log } = services;
    const track = (p: Promise<void>) => {
      this.pending.add(p);
      void p.finally(() => this.pending.delete(p));
    };
    this.client.on(Events.InteractionCreate, (i) => track(this.handler.handle(i)));
    this.client.on(Events.MessageCreate, (m) => track(this.autoDetect.handle(m)));
    this.client.on(Events.ShardReady, () => (this.isConnected = true));
    this.client.on(Events.ShardResume, () => {
      this.isConnected = true;
      log('Discord: connection resumed');
    });
    this.client.on(Events.ShardDisconnect, (e) => {
      this.isConnected = false;
      log(`Discord: disconnected (code ${e.code})`);
    });
    this.client.on(Events.ShardReconnecting, () => (this.isConnected = false));
    this.client.on(Events.Error, (err) => log(`Discord client error: ${err.message}`));
    this.client.on(Events.Warn, (w) => log(`Discord warning: ${w}`));
  }

  get connected(): boolean {
    return this.isConnected;
  }

  get commandDefinitions() {
    return this.handler.commands.map((c) => c.definition);
  }

  /**
   * Logs in, waits for READY, then makes sure the registered commands match the code's.
   * Rejects when Discord refuses the token or the intents.
   */
  async start(token: string): Promise<void> {
    const { log, config } = this.services;
    const ready = new Promise<void>((resolve, reject) => {
      this.client.once(Events.ClientReady, () => resolve());
      this.client.once(Events.Error, reject);
    });
    try {
      await this.client.login(token);
    } catch (err) {
      throw explainLoginError(err, config.discord.messageContent);
    }
    await ready;
    this.isConnected = true;
    const user = this.client.user!;
    log(`Discord: logged in as ${user.tag} in ${this.client.guilds.cache.size} server(s)`);
    // Admin operations are global: the application's owner (or its team) is the admin.
    try {
      const application = await this.client.application!.fetch();
      this.services.admins.setOwners(application);
    } catch (err) {
      this.services.admins.ownerUnknown(err instanceof Error ? err.message : String(err));
    }
    log(this.services.admins.describe());
    const appId = config.discord.appId ?? this.client.application?.id ?? user.id;
    // Sharded (src/scale): shard 0's process keeps the commands in sync, the others need not.
    if (this.client.shard && !this.client.shard.ids.includes(0)) return;
    try {
      const r = await syncCommands(this.client.rest, appId, config.discord.guildId, this.commandDefinitions);
      log(`Discord: ${r.count} command(s) ${r.changed ? 'registered' : 'already up to date'} (${r.scope})`);
    } catch (err) {
      log(`Discord: could not register commands: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** Waits until every handler that started has answered. */
  async settled(): Promise<void> {
    while (this.pending.size) await Promise.allSettled([...this.pending]);
  }

  async stop(): Promise<void> {
    this.isConnected = false;
    await this.client.destroy();
  }
}

function explainLoginError(err: unknown, messageContent: boolean): Error {
  const msg = err instanceof Error ? err.message : String(err);
  if (/disallowed intents/i.test(msg) && messageContent) {
    return new Error(
      'Discord refused the Message Content intent (used by auto-detect). Turn it on in the Developer Portal ' +
        '(your app → Bot → Privileged Gateway Intents → Message Content Intent), or set MESSAGE_CONTENT_INTENT=false to run without auto-detect.',
      { cause: err },
    );
  }
  if (/token/i.test(msg)) return new Error(`Discord refused the token (DISCORD_TOKEN): ${msg}`, { cause: err });
  return err instanceof Error ? err : new Error(msg);
}
