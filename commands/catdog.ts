/** `/catdog image:<attachment> | url:<link> [private:true]`: one photo, one verdict. */
import { ApplicationIntegrationType, InteractionContextType, SlashCommandBuilder } from 'discord.js';
import { attachmentSource, classifySource, type ImageSource } from '../src/bot/classify.ts';
import { chatCommand } from '../src/bot/command.ts';
import { predictionEmbed } from '../src/bot/replies/prediction.ts';
import { UsageError } from '../src/errors.ts';

export const catdog = chatCommand({
  definition: new SlashCommandBuilder()
    .setName('catdog')
    .setDescription('Is it a cat or a dog? Attach a photo or give a link.')
    .addAttachmentOption((o) => o.setName('image').setDescription('The photo to look at'))
    .addStringOption((o) => o.setName('url').setDescription('A link to a photo on Discord').setMaxLength(2000))
    .addBooleanOption((o) => o.setName('private').setDescription('Only you see the answer'))
    .setContexts(InteractionContextType.Guild, InteractionContextType.BotDM)
    .setIntegrationTypes(ApplicationIntegrationType.GuildInstall)
    .toJSON(),
  surface: 'slash',
  cooldown: true,
  defer: (i) => (i.options.getBoolean('private') ? 'ephemeral' : 'public'),
  async execute({ interaction, services, signal }) {
    const started = performance.now();
    const attachment = interaction.options.getAttachment('image');
    const url = interaction.options.getString('url');
    if (!attachment && !url) throw new UsageError('Attach a photo with `image:` or give a link with `url:`.');
    if (attachment && url) throw new UsageError('Give me either `image:` or `url:`, not both.');
    const source: ImageSource = attachment ? attachmentSource(attachment) : { url: url!, name: nameFromUrl(url!) };
    const prediction = await classifySource(services, source, {
      key: interaction.guildId ?? `dm:${interaction.user.id}`,
      guildId: interaction.guildId,
      signal,
    });
    await interaction.editReply({ embeds: [predictionEmbed(prediction, { name: source.name, elapsedMs: performance.now() - started })] });
  },
});

function nameFromUrl(raw: string): string {
  try {
    const last = new URL(raw).pathname.split('/').filter(Boolean).pop();
    return last ? decodeURIComponent(last) : 'link';
  } catch {
    return 'link';
  }
}
