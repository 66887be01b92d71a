/** `/catdog-settings`: auto-detect per channel or per server, and how it answers. Manage Server only. */
import { ChannelType, InteractionContextType, PermissionFlagsBits, SlashCommandBuilder } from 'discord.js';
import { chatCommand } from '../src/bot/command.ts';
import { UsageError } from '../src/errors.ts';
import type { AnswerStyle } from '../src/store/index.ts';

export const catdogSettings = chatCommand({
  definition: new SlashCommandBuilder()
    .setName('catdog-settings')
    .setDescription('Auto-detect cats and dogs in posted photos (Manage Server)')
    .setDefaultMemberPermissions(PermissionFlagsBits.ManageGuild)
    .setContexts(InteractionContextType.Guild)
    .addSubcommand((s) => s.setName('show').setDescription('Show the current settings'))
    .addSubcommand((s) =>
      s
        .setName('auto-detect')
        .setDescription('Answer photos posted in a channel (or the whole server) without being asked')
        .addBooleanOption((o) => o.setName('enabled').setDescription('On or off').setRequired(true))
        .addStringOption((o) =>
          o
            .setName('where')
            .setDescription('This channel (default) or the whole server')
            .addChoices({ name: 'this channel', value: 'channel' }, { name: 'whole server', value: 'server' }),
        )
        .addChannelOption((o) =>
          o.setName('channel').setDescription('Another channel than this one').addChannelTypes(ChannelType.GuildText, ChannelType.GuildAnnouncement),
        ),
    )
    .addSubcommand((s) =>
      s
        .setName('answer-style')
        .setDescription('How auto-detect answers')
        .addStringOption((o) =>
          o
            .setName('style')
            .setDescription('A reply with the verdict, or just a 🐶/🐱 reaction')
            .setRequired(true)
            .addChoices({ name: 'reply', value: 'reply' }, { name: 'reaction', value: 'react' }),
        ),
    )
    .toJSON(),
  surface: 'slash',
  cooldown: false,
  memberPermissions: PermissionFlagsBits.ManageGuild,
  permissionWords: 'Only members with the **Manage Server** permission can change these settings.',
  defer: () => 'ephemeral',
  async execute({ interaction, services }) {
    if (!interaction.inGuild()) throw new UsageError('Settings belong to a server; use this command in one.');
    const { settings } = services.store;
    const guildId = interaction.guildId;
    const sub = interaction.options.getSubcommand(true);
    const lines: string[] = [];
    if (sub === 'auto-detect') {
      const enabled = interaction.options.getBoolean('enabled', true);
      const where = interaction.options.getString('where') ?? 'channel';
      if (where === 'server') {
        await settings.updateGuild(guildId, { autoDetect: enabled });
        lines.push(`Auto-detect is now **${enabled ? 'on' : 'off'}** for the whole server (channels set on their own keep their setting).`);
      } else {
        const channelId = interaction.options.getChannel('channel')?.id ?? interaction.channelId;
        await settings.setChannel(channelId, { autoDetect: enabled });
        lines.push(`Auto-detect is now **${enabled ? 'on' : 'off'}** in <#${channelId}>.`);
      }
      if (enabled && !services.config.discord.messageContent) {
        lines.push('⚠️ This bot runs without the Message Content intent, so it cannot see attachments in new messages; ask its operator to enable it.');
      }
    } else if (sub === 'answer-style') {
      const style = interaction.options.getString('style', true) as AnswerStyle;
      await settings.updateGuild(guildId, { style });
      lines.push(`Auto-detect now answers with ${style === 'reply' ? 'a **reply**' : 'a **reaction** (🐶/🐱)'}.`);
    }
    const g = await settings.guild(guildId);
    const here = await settings.channel(interaction.channelId);
    lines.push(
      `Server-wide auto-detect: **${g.autoDetect ? 'on' : 'off'}** · answer style: **${g.style === 'reply' ? 'reply' : 'reaction'}** · this channel: **${
        here.autoDetect === null ? `follows the server (${g.autoDetect ? 'on' : 'off'})` : here.autoDetect ? 'on' : 'off'
      }**`,
    );
    await interaction.editReply({ content: lines.join('\n') });
  },
});
