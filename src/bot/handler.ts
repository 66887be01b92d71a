/**
 * The one command handler: for every slash and context-menu command it applies, in order, the
 * shutdown gate, member permissions, the per-user cooldown (told once per window), the deferral
 * (Discord's 3-second rule), then execute(), turning any error into polite words and recording
 * metrics. Commands stay thin.
 */
import {
  MessageFlags,
  type ChatInputCommandInteraction,
  type Interaction,
  type MessageContextMenuCommandInteraction,
  type RepliableInteraction,
} from 'discord.js';
import { ShuttingDown } from '../errors.ts';
import { outcomeOf, type Outcome } from '../web/metrics.ts';
import type { Command } from './command.ts';
import { cooldownWords, describeError, isExpected } from './replies.ts';
import type { BotServices } from './services.ts';

export class CommandHandler {
  private readonly byName = new Map<string, Command>();

  constructor(
    commands: readonly Command[],
    private readonly services: BotServices,
    private readonly signal: AbortSignal = new AbortController().signal,
  ) {
    for (const c of commands) this.byName.set(c.definition.name, c);
  }

  get commands(): Command[] {
    return [...this.byName.values()];
  }

  async handle(interaction: Interaction): Promise<void> {
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
