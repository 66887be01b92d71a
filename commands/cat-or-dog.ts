/** "Cat or dog?" on a message (right-click → Apps): every image on it. No Message Content intent needed. */
import { ApplicationCommandType, ApplicationIntegrationType, ContextMenuCommandBuilder, InteractionContextType } from 'discord.js';
import { AUTO_DETECT_MAX_IMAGES } from '../src/bot/autodetect.ts';
import { attachmentSource, classifyMany, isImageAttachment, type ImageSource } from '../src/bot/classify.ts';
import { messageCommand } from '../src/bot/command.ts';
import { UsageError } from '../src/errors.ts';

export const catOrDog = messageCommand({
  definition: new ContextMenuCommandBuilder()
    .setName('Cat or dog?')
    .setType(ApplicationCommandType.Message)
    .setContexts(InteractionContextType.Guild, InteractionContextType.BotDM)
    .setIntegrationTypes(ApplicationIntegrationType.GuildInstall)
    .toJSON(),
  surface: 'context_menu',
  cooldown: true,
  defer: () => 'public',
  async execute({ interaction, services, signal }) {
    const started = performance.now();
    const message = interaction.targetMessage;
    const sources: ImageSource[] = [...message.attachments.values()].filter(isImageAttachment).map(attachmentSource);
    // Link previews and bot embeds carry their picture on Discord's media proxy.
    for (const e of message.embeds) {
      const media = e.image ?? e.thumbnail;
      const url = media?.proxyURL ?? media?.url;
      if (url) sources.push({ url, name: e.title ?? 'embedded image', width: media?.width, height: media?.height });
    }
    if (sources.length === 0) throw new UsageError('That message has no images for me to look at.');
    const chosen = sources.slice(0, AUTO_DETECT_MAX_IMAGES);
    const key = interaction.guildId ?? `dm:${interaction.user.id}`;
    const { embeds, outcome } = await classifyMany(services, chosen, { key, guildId: interaction.guildId, signal, what: '"Cat or dog?" error', started });
    const more = sources.length > chosen.length ? `I looked at the first ${chosen.length} of ${sources.length} images.` : undefined;
    await interaction.editReply({ content: more ?? '', embeds });
    return outcome;
  },
});
