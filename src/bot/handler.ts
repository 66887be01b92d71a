/**
 * The one command handler: for every slash and context-menu command it applies, in order, the
 * shutdown gate, the admin check (command.admin: anyone who is not one of the bot's admins is
 * refused and the attempt logged, src/bot/admin.ts), member permissions, the per-user rate limit
 * (a token bucket: every refusal answered, ephemerally, with when to try again), the deferral (Discord's 3-second rule), then execute(), turning any
 * error into polite words and recording metrics. Buttons on the bot's messages are routed here
 * too, by custom id prefix, through the same gate and admin check. Commands stay thin.
 */
import {
  MessageFlags,
  type ButtonInteraction,
  type ChatInputCommandInteraction,
  type Interaction,
  type MessageContextMenuCommandInteraction,
  type RepliableInteraction,
} from 'discord.js';
import { isExpected } from '../errors.ts';
import { outcomeOf, type Outcome, type Surface } from '../metrics.ts';
import { adminCheckInput, refusalLogLine } from './admin.ts';
import type { ButtonRoute, Command } from './command.ts';
import { Guard } from './guard.ts';
import { adminRefusalWords, describeError } from './replies/words.ts';
import type { BotServices } from './services.ts';

export class CommandHandler {
  private readonly byName = new Map<string, Command>();
  private readonly buttons = new Map<string, ButtonRoute>();
  private readonly guard: Guard;

  constructor(
    commands: readonly Command[],
    private readonly services: BotServices,
    private readonly signal: AbortSignal = new AbortController().signal,
  ) {
    this.guard = new Guard(services);
    for (const c of commands) {
      this.byName.set(c.definition.name, c);
      for (const b of c.buttons ?? []) {
        if (this.buttons.has(b.prefix)) throw new Error(`two commands route buttons "${b.prefix}:…"`);
        this.buttons.set(b.prefix, b);
      }
    }
  }

  get commands(): Command[] {
    return [...this.byName.values()];
  }

  async handle(interaction: Interaction): Promise<void> {
    if (interaction.isButton()) return this.handleButton(interaction);
    if (!interaction.isChatInputCommand() && !interaction.isMessageContextMenuCommand()) return;
    const command = this.byName.get(interaction.commandName);
    const bound = command && bind(command, interaction);
    if (!command || !bound) {
      this.services.log(`unknown command "${interaction.commandName}" (registered commands out of date?)`);
      await this.safely(interaction, () => interaction.reply({ content: 'I do not know that command any more.', flags: MessageFlags.Ephemeral }));
      return;
    }
    await this.guarded(interaction, { surface: command.surface, admin: Boolean(command.admin), what: `/${interaction.commandName}` }, async () => {
      if (command.memberPermissions !== undefined) {
        // Discord hides the command from those without default_member_permissions; this is the second fence.
        if (!interaction.memberPermissions?.has(command.memberPermissions)) {
          await interaction.reply({
            content: command.permissionWords ?? 'You do not have the permission this command needs.',
            flags: MessageFlags.Ephemeral,
          });
          return 'forbidden';
        }
      }

      if (command.cooldown) {
        // Every refusal is answered, only to the asker, with when to try again: never dropped silently.
        const allowed = await this.guard.cooldown(interaction.user.id, (words) => interaction.reply({ content: words, flags: MessageFlags.Ephemeral }));
        if (!allowed) return 'cooldown';
      }

      await interaction.deferReply(bound.defer() === 'ephemeral' ? { flags: MessageFlags.Ephemeral } : {});
      try {
        return (await bound.execute(this.services, this.signal)) ?? 'ok';
      } catch (err) {
        if (!isExpected(err)) this.logError(`/${interaction.commandName}`, interaction, err);
        await interaction.editReply({ content: describeError(err), embeds: [] });
        return outcomeOf(err);
      }
    });
  }

  /** A button on one of the bot's messages: gate, admin check, then the route's handler. */
  private async handleButton(interaction: ButtonInteraction): Promise<void> {
    const [prefix = '', ...args] = interaction.customId.split(':');
    const route = this.buttons.get(prefix);
    if (!route) return; // not ours (or from an older version): Discord shows "interaction failed"
    await this.guarded(interaction, { surface: 'admin', admin: Boolean(route.admin), what: `button ${interaction.customId}`, refusal: `the button ${prefix}` }, async () => {
      try {
        return (await route.handle({ interaction, services: this.services, signal: this.signal, args })) ?? 'ok';
      } catch (err) {
        if (!isExpected(err)) this.logError(`button ${interaction.customId}`, interaction, err);
        const answer = { content: describeError(err), flags: MessageFlags.Ephemeral } as const;
        if (interaction.deferred || interaction.replied) await interaction.followUp(answer);
        else await interaction.reply(answer);
        return outcomeOf(err);
      }
    });
  }

  /**
   * What every interaction goes through: the guard (shutdown gate, metrics, last-resort log) and
   * the admin check when asked (refusal logged).
   */
  private async guarded(
    interaction: RepliableInteraction,
    o: { surface: Surface; admin: boolean; what: string; refusal?: string },
    body: () => Promise<Outcome>,
  ): Promise<void> {
    const { admins, log } = this.services;
    await this.guard.run(
      {
        surface: o.surface,
        onClosed: (err) => interaction.reply({ content: describeError(err), flags: MessageFlags.Ephemeral }),
        onFault: (err) => this.logError(o.what, interaction, err),
      },
      async () => {
        if (o.admin && !admins.isAdmin(adminCheckInput(interaction))) {
          log(refusalLogLine(interaction, o.refusal ?? o.what));
          await interaction.reply({ content: adminRefusalWords(admins.policy), flags: MessageFlags.Ephemeral });
          return 'forbidden';
        }
        return body();
      },
    );
  }

  private logError(what: string, interaction: Interaction, err: unknown): void {
    const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
    this.services.log(`error in ${what} (interaction ${interaction.id}): ${detail}`);
  }

  private async safely(interaction: RepliableInteraction & { commandName: string }, fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.logError(`/${interaction.commandName}`, interaction, err);
    }
  }
}

/** A command paired with an interaction of its kind (null when the kinds differ). */
function bind(
  command: Command,
  interaction: ChatInputCommandInteraction | MessageContextMenuCommandInteraction,
): { defer(): 'ephemeral' | 'public'; execute(services: BotServices, signal: AbortSignal): Promise<Outcome | void> } | null {
  if (command.kind === 'chat' && interaction.isChatInputCommand()) {
    return { defer: () => command.defer(interaction), execute: (services, signal) => command.execute({ interaction, services, signal }) };
  }
  if (command.kind === 'message' && interaction.isMessageContextMenuCommand()) {
    return { defer: () => command.defer(interaction), execute: (services, signal) => command.execute({ interaction, services, signal }) };
  }
  return null;
}
