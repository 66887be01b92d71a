/**
 * Who may run admin operations. Admin operations are global (a promoted model answers in every
 * server), so the gate is too: the application's owner (or the members of its team), read from
 * Discord's GET /applications/@me at startup, plus the users in ADMIN_USER_IDS, anywhere. Roles
 * (ADMIN_ROLE_IDS) and, when no role is listed, the Administrator permission count only in the
 * home server (DISCORD_GUILD_ID): never in another server, where anyone can be an Administrator
 * (a server they just created). Discord's default_member_permissions only hides the commands.
 */
import {
  InteractionContextType,
  PermissionFlagsBits,
  SlashCommandBuilder,
  Team,
  TeamMemberMembershipState,
  type ClientApplication,
  type Interaction,
  type User,
} from 'discord.js';
import type { Config } from '../config.ts';
import type { JobUser } from '../jobs/types.ts';
import { UsageError } from '../errors.ts';
import type { AdminServices, BotServices } from './services.ts';

export interface AdminCheckInput {
  userId: string;
  /** Where the interaction happened (null in a direct message). */
  guildId: string | null;
  /** Role ids of the member (empty outside a guild). */
  roleIds: readonly string[];
  /** Whether the member has the Administrator permission (in this guild). */
  administrator: boolean;
}

export interface AdminPolicy {
  /** The application's owner or its team's members (from Discord at startup). */
  ownerIds: readonly string[];
  /** ADMIN_USER_IDS. */
  userIds: readonly string[];
  /** ADMIN_ROLE_IDS: count in the home server only. */
  roleIds: readonly string[];
  /** DISCORD_GUILD_ID: the only server where roles or Administrator make an admin. */
  homeGuildId: string | null;
}

export function isAdmin(who: AdminCheckInput, p: AdminPolicy): boolean {
  if (p.ownerIds.includes(who.userId) || p.userIds.includes(who.userId)) return true;
  if (!p.homeGuildId || who.guildId !== p.homeGuildId) return false;
  if (p.roleIds.length) return who.roleIds.some((r) => p.roleIds.includes(r));
  return who.administrator;
}

/** The admins of this process: the configured ones, and the owners once Discord has said who they are. */
export class Admins {
  private owners: string[] = [];
  private ownerWords = 'the application owner (not known yet)';

  constructor(private readonly config: Pick<Config, 'admins' | 'discord'>) {}

  get policy(): AdminPolicy {
    return { ownerIds: this.owners, userIds: this.config.admins.userIds, roleIds: this.config.admins.roleIds, homeGuildId: this.config.discord.guildId };
  }

  isAdmin(who: AdminCheckInput): boolean {
    return isAdmin(who, this.policy);
  }

  /** The owners from GET /applications/@me: the owner user, or the team's accepted members. */
  setOwners(application: Pick<ClientApplication, 'owner'>): void {
    const owner = application.owner;
    if (owner instanceof Team) {
      const members = [...owner.members.values()].filter((m) => m.membershipState === TeamMemberMembershipState.Accepted);
      this.owners = members.map((m) => m.id);
      this.ownerWords = `the members of the team "${owner.name}" that owns the application (${members.map((m) => `${m.user.username} ${m.id}`).join(', ') || 'none accepted'})`;
    } else if (owner) {
      this.owners = [owner.id];
      this.ownerWords = `the application owner ${owner.username} (${owner.id})`;
    } else {
      this.owners = [];
      this.ownerWords = 'no application owner (Discord did not say)';
    }
  }

  /** Looking the owner up failed: only the configured admins count. */
  ownerUnknown(reason: string): void {
    this.owners = [];
    this.ownerWords = `no application owner (could not read it from Discord: ${reason})`;
  }

  /** One line for the startup log: who the admins are. */
  describe(): string {
    const p = this.policy;
    const parts = [this.ownerWords];
    if (p.userIds.length) parts.push(`ADMIN_USER_IDS ${p.userIds.join(', ')}`);
    const home = p.homeGuildId
      ? `in the home server ${p.homeGuildId} also ${p.roleIds.length ? `members with a role in ADMIN_ROLE_IDS (${p.roleIds.join(', ')})` : 'members with the Administrator permission'}`
      : 'no home server (DISCORD_GUILD_ID), so no role or permission makes an admin';
    return `admin: admins are ${parts.join(' and ')}, in every server; ${home}; nobody else, in any other server`;
  }
}

/** What an interaction says about its user, for isAdmin. */
export function adminCheckInput(interaction: Interaction): AdminCheckInput {
  const member = interaction.member;
  let roleIds: string[] = [];
  if (member) roleIds = Array.isArray(member.roles) ? [...member.roles] : [...member.roles.cache.keys()];
  return {
    userId: interaction.user.id,
    guildId: interaction.guildId,
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
