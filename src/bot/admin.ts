/**
 * Who may run admin operations, decided by the bot itself (Discord's default_member_permissions
 * only hides the commands; a server can change those): the users in ADMIN_USER_IDS and the members
 * with a role in ADMIN_ROLE_IDS; when neither is configured, members with the Administrator
 * permission.
 */
import { InteractionContextType, PermissionFlagsBits, SlashCommandBuilder, type Interaction, type User } from 'discord.js';
import type { Config } from '../config.ts';
import type { JobUser } from '../jobs/types.ts';
import { UsageError } from '../errors.ts';
import type { AdminServices, BotServices } from './services.ts';

export interface AdminCheckInput {
  userId: string;
  /** Role ids of the member (empty outside a guild). */
  roleIds: readonly string[];
  /** Whether the member has the Administrator permission (in this guild). */
  administrator: boolean;
}

export function isAdmin(who: AdminCheckInput, admins: Config['admins']): boolean {
  if (admins.userIds.length || admins.roleIds.length) {
    return admins.userIds.includes(who.userId) || who.roleIds.some((r) => admins.roleIds.includes(r));
  }
  return who.administrator;
}

/** What an interaction says about its user, for isAdmin. */
export function adminCheckInput(interaction: Interaction): AdminCheckInput {
  const member = interaction.member;
  let roleIds: string[] = [];
  if (member) roleIds = Array.isArray(member.roles) ? [...member.roles] : [...member.roles.cache.keys()];
  return {
    userId: interaction.user.id,
    roleIds,
    administrator: interaction.memberPermissions?.has(PermissionFlagsBits.Administrator) ?? false,
  };
}

/** The log line for a refused attempt. */
export function refusalLogLine(interaction: Interaction, what: string): string {
  const where = interaction.guildId ? `guild ${interaction.guildId}, channel ${interaction.channelId}` : 'a direct message';
  return `admin: refused ${what} to ${interaction.user.tag} (${interaction.user.id}) in ${where}: not an admin`;
}

/** The admin services, or a clear refusal when this process cannot run jobs (a test double classifier). */
export function adminServices(services: BotServices): AdminServices {
  if (!services.admin) {
    throw new UsageError('Admin operations need the real classifier (ONNX backbones); this process runs without one.');
  }
  return services.admin;
}

/** A Discord user as job records keep them. */
export function jobUser(user: User): JobUser {
  return { id: user.id, name: user.username };
}

/**
 * The slash-command builder every admin command starts from: guild only, and shown to members
 * with Administrator by Discord's default (the bot checks admins itself as well).
 */
export function adminSlashCommand(name: string, description: string): SlashCommandBuilder {
  return new SlashCommandBuilder()
    .setName(name)
    .setDescription(description)
    .setDefaultMemberPermissions(PermissionFlagsBits.Administrator)
    .setContexts(InteractionContextType.Guild);
}

/** Handler settings shared by every admin command. */
export const ADMIN_COMMAND = { surface: 'admin', cooldown: false, admin: true } as const;
