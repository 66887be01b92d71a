/**
 * The shape of a command: its definition for Discord and a thin execute(). Cooldowns, deferring,
 * permissions, errors and metrics are the handler's job (handler.ts), the same for every command.
 */
import type {
  ChatInputCommandInteraction,
  MessageContextMenuCommandInteraction,
  RESTPostAPIChatInputApplicationCommandsJSONBody,
  RESTPostAPIContextMenuApplicationCommandsJSONBody,
} from 'discord.js';
import type { Outcome, Surface } from '../web/metrics.ts';
import type { BotServices } from './services.ts';

export interface CommandContext<I> {
  interaction: I;
  services: BotServices;
  /** Aborted when the process must stop at once (not on a graceful SIGTERM, which lets work finish). */
  signal: AbortSignal;
}

interface CommandBase<I, D> {
  definition: D;
  /** The metrics label for requests through this command. */
  surface: Surface;
  /** Whether the per-user cooldown applies. */
  cooldown: boolean;
  /** Permission bits the member must have (also sent to Discord as default_member_permissions). */
  memberPermissions?: bigint;
  /** The words used when the member lacks memberPermissions. */
  permissionWords?: string;
  /** How the handler defers before execute(): an answer only the user sees, or one in the channel. */
  defer(interaction: I): 'ephemeral' | 'public';
  /** Does the work and edits the deferred reply. Returns the outcome for metrics (default ok). */
  execute(ctx: CommandContext<I>): Promise<Outcome | void>;
}

export interface ChatCommand extends CommandBase<ChatInputCommandInteraction, RESTPostAPIChatInputApplicationCommandsJSONBody> {
  kind: 'chat';
}

export interface MessageCommand
  extends CommandBase<MessageContextMenuCommandInteraction, RESTPostAPIContextMenuApplicationCommandsJSONBody> {
  kind: 'message';
}

export type Command = ChatCommand | MessageCommand;

export function chatCommand(c: Omit<ChatCommand, 'kind'>): ChatCommand {
  return { kind: 'chat', ...c };
}

export function messageCommand(c: Omit<MessageCommand, 'kind'>): MessageCommand {
  return { kind: 'message', ...c };
}
