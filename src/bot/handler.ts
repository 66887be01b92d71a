/**
 * The one command handler: for every slash and context-menu command it applies, in order, the
 * shutdown gate, member permissions, the per-user cooldown (told once per window), the deferral
 * (Discord's 3-second rule), then execute(), turning any error into polite words and recording
 * metrics. Admin commands (command.admin) and admin buttons are refused, and the attempt logged,
 * for anyone who is not one of the bot's admins (src/bot/admin.ts). Buttons on the bot's messages
 * are routed here too, by custom id prefix. Commands stay thin.
 */
import {
  MessageFlags,
  type ButtonInteraction,
  type ChatInputCommandInteraction,
  type Interaction,
  type MessageContextMenuCommandInteraction,
  type RepliableInteraction,
} from 'discord.js';
import { ShuttingDown } from '../errors.ts';
import { outcomeOf, type Outcome } from '../web/metrics.ts';
import { adminCheckInput, isAdmin, refusalLogLine } from './admin.ts';
import type { ButtonRoute, Command } from './command.ts';
import { adminRefusalWords, cooldownWords, describeError, isExpected } from './replies.ts';
import type { BotServices } from './services.ts';

export class CommandHandler {
  private readonly byName = new Map<string, Command>();
  private readonly buttons = new Map<string, ButtonRoute>();

  constructor(
    commands: readonly Command[],
    private readonly services: BotServices,
    private readonly signal: AbortSignal = new AbortController().signal,
  ) {
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
    const started = performance.now();
    const { gate, metrics, store, config } = this.services;
    let outcome: Outcome = 'ok';
    let leave: (() => void) | null = null;
    try {
      try {
        leave = gate.enter();
      } catch (err) {
        if (!(err instanceof ShuttingDown)) throw err;
        outcome = 'shutting_down';
        await interaction.reply({ content: describeError(err), flags: MessageFlags.Ephemeral });
        return;
      }

      if (command.memberPermissions !== undefined) {
        // Discord hides the command from those without default_member_permissions; this is the second fence.
        if (!interaction.memberPermissions?.has(command.memberPermissions)) {
          outcome = 'forbidden';
          await interaction.reply({
            content: command.permissionWords ?? 'You do not have the permission this command needs.',
            flags: MessageFlags.Ephemeral,
          });
          return;
        }
      }

      if (command.admin && !isAdmin(adminCheckInput(interaction), config.admins)) {
        outcome = 'forbidden';
        this.services.log(refusalLogLine(interaction, `/${interaction.commandName}`));
        await interaction.reply({ content: adminRefusalWords(config.admins), flags: MessageFlags.Ephemeral });
        return;
      }

      if (command.cooldown && config.cooldownSeconds > 0) {
        const check = await store.cooldowns.take(interaction.user.id, config.cooldownSeconds);
        if (!check.allowed) {
          outcome = 'cooldown';
          if (check.notify) {
            await interaction.reply({ content: cooldownWords(check.retryAfterMs), flags: MessageFlags.Ephemeral });
          } else {
            // Told once already: acknowledge without a new message, so the user is not nagged.
            await interaction.deferReply({ flags: MessageFlags.Ephemeral });
            await interaction.deleteReply();
          }
          return;
        }
      }

      await interaction.deferReply(bound.defer() === 'ephemeral' ? { flags: MessageFlags.Ephemeral } : {});
      try {
        outcome = (await bound.execute(this.services, this.signal)) ?? 'ok';
      } catch (err) {
        outcome = err && typeof err === 'object' && 'code' in err && err.code === 'usage' ? 'bad_input' : outcomeOf(err);
        if (!isExpected(err)) this.logError(interaction, err);
        await interaction.editReply({ content: describeError(err), embeds: [] });
      }
    } catch (err) {
      // Answering itself failed (Discord unreachable, interaction expired…): nothing left to tell the user.
      outcome = 'error';
      this.logError(interaction, err);
    } finally {
      metrics.observe(command.surface, outcome, (performance.now() - started) / 1000);
      leave?.();
    }
  }

  /** A button on one of the bot's messages: gate, admin check, then the route's handler. */
  private async handleButton(interaction: ButtonInteraction): Promise<void> {
    const [prefix = '', ...args] = interaction.customId.split(':');
    const route = this.buttons.get(prefix);
    if (!route) return; // not ours (or from an older version): Discord shows "interaction failed"
    const started = performance.now();
    const { gate, metrics, config, log } = this.services;
    let outcome: Outcome = 'ok';
    let leave: (() => void) | null = null;
    try {
      try {
        leave = gate.enter();
      } catch (err) {
        if (!(err instanceof ShuttingDown)) throw err;
        outcome = 'shutting_down';
        await interaction.reply({ content: describeError(err), flags: MessageFlags.Ephemeral });
        return;
      }
      if (route.admin && !isAdmin(adminCheckInput(interaction), config.admins)) {
        outcome = 'forbidden';
        log(refusalLogLine(interaction, `the button ${prefix}`));
        await interaction.reply({ content: adminRefusalWords(config.admins), flags: MessageFlags.Ephemeral });
        return;
      }
      try {
        outcome = (await route.handle({ interaction, services: this.services, signal: this.signal, args })) ?? 'ok';
      } catch (err) {
        outcome = err && typeof err === 'object' && 'code' in err && err.code === 'usage' ? 'bad_input' : outcomeOf(err);
        if (!isExpected(err)) log(`error in button ${interaction.customId} (interaction ${interaction.id}): ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
        const answer = { content: describeError(err), flags: MessageFlags.Ephemeral } as const;
        if (interaction.deferred || interaction.replied) await interaction.followUp(answer);
        else await interaction.reply(answer);
      }
    } catch (err) {
      outcome = 'error';
      log(`error in button ${interaction.customId} (interaction ${interaction.id}): ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    } finally {
      metrics.observe('admin', outcome, (performance.now() - started) / 1000);
      leave?.();
    }
  }

  private logError(interaction: RepliableInteraction & { commandName: string }, err: unknown): void {
    const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
    this.services.log(`error in /${interaction.commandName} (interaction ${interaction.id}): ${detail}`);
  }

  private async safely(interaction: RepliableInteraction & { commandName: string }, fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.logError(interaction, err);
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
