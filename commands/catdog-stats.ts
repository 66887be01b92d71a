/** `/catdog-stats`: this server's counts and its cat/dog ratio. */
import { InteractionContextType, SlashCommandBuilder } from 'discord.js';
import { chatCommand } from '../src/bot/command.ts';
import { UsageError } from '../src/errors.ts';
import type { GuildStats } from '../src/store/index.ts';

export const catdogStats = chatCommand({
  definition: new SlashCommandBuilder()
    .setName('catdog-stats')
    .setDescription("This server's cat and dog counts")
    .setContexts(InteractionContextType.Guild)
    .toJSON(),
  surface: 'slash',
  cooldown: false,
  defer: () => 'public',
  async execute({ interaction, services }) {
    if (!interaction.inGuild()) throw new UsageError('Stats belong to a server; use this command in one.');
    const stats = await services.store.stats.get(interaction.guildId);
    await interaction.editReply({ embeds: [statsEmbed(stats, interaction.guild?.name ?? 'this server')] });
  },
});

export function statsEmbed(s: GuildStats, guildName: string) {
  if (s.total === 0) {
    return { title: `📊 Cat or dog? · ${guildName}`, description: 'No photos yet. Try `/catdog` with a photo!' };
  }
  const pct = (n: number) => `${Math.round((100 * n) / s.total)}%`;
  const ratio =
    s.cat + s.dog === 0
      ? 'no cats or dogs yet'
      : `${s.cat} : ${s.dog} (${Math.round((100 * s.cat) / (s.cat + s.dog))}% cats, ${Math.round((100 * s.dog) / (s.cat + s.dog))}% dogs)`;
  return {
    title: `📊 Cat or dog? · ${guildName}`,
    description: `**${s.total}** photo${s.total === 1 ? '' : 's'} looked at.`,
    fields: [
      { name: '🐶 Dogs', value: `${s.dog} (${pct(s.dog)})`, inline: true },
      { name: '🐱 Cats', value: `${s.cat} (${pct(s.cat)})`, inline: true },
      { name: '🤷 Neither', value: `${s.neither} (${pct(s.neither)})`, inline: true },
      { name: 'Cat : dog', value: ratio },
    ],
  };
}
