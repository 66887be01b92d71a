/**
 * The shape of a command: its definition for Discord and a thin execute(). Cooldowns, deferring,
 * permissions, errors and metrics are the handler's job (handler.ts), the same for every command.
 */
import type {
  ButtonInteraction,
  ChatInputCommandInteraction,
  MessageContextMenuCommandInteraction,
  RESTPostAPIChatInputApplicationCommandsJSONBody,
  RESTPostAPIContextMenuApplicationCommandsJSONBody,
} from 'discord.js';
import type { Outcome, Surface } from '../metrics.ts';
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
  /**
   * Only the bot's admins may run it (ADMIN_USER_IDS / ADMIN_ROLE_IDS, else the Administrator
   * permission), checked by the handler; everyone else is refused and the attempt logged.
   */
  admin?: boolean;
  /** Buttons this command puts on its messages, routed by the handler (custom id `<prefix>:<args…>`). */
  buttons?: ButtonRoute[];
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

export interface ButtonContext {
  interaction: ButtonInteraction;
  services: BotServices;
  signal: AbortSignal;
  /** The custom id's parts after the prefix. */
  args: string[];
}

export interface ButtonRoute {
  /** The custom id's first part, unique across commands. */
  prefix: string;
  /** Only the bot's admins may press it (checked by the handler, like admin commands). */
  admin: boolean;
  /** Acknowledges the press (update, deferUpdate or reply) and does the work. */
  handle(ctx: ButtonContext): Promise<Outcome | void>;
}

/** A button custom id: `<prefix>:<args…>` (at most 100 characters, Discord's limit). */
export function buttonId(prefix: string, ...args: string[]): string {
  const id = [prefix, ...args].join(':');
  if (id.length > 100) throw new RangeError(`button id too long: ${id}`);
  return id;
}
