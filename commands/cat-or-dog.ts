/** "Cat or dog?" on a message (right-click → Apps): every image on it. No Message Content intent needed. */
import { ApplicationCommandType, ApplicationIntegrationType, ContextMenuCommandBuilder, InteractionContextType } from 'discord.js';
import { AUTO_DETECT_MAX_IMAGES } from '../src/bot/autodetect.ts';
import { attachmentSource, classifySource, isImageAttachment, type ImageSource } from '../src/bot/classify.ts';
import { messageCommand } from '../src/bot/command.ts';
import { errorEmbed, predictionEmbed } from '../src/bot/replies.ts';
import { isExpected, UsageError } from '../src/errors.ts';
import { outcomeOf } from '../src/metrics.ts';

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
    const results = await Promise.allSettled(chosen.map((s) => classifySource(services, s, { key, guildId: interaction.guildId, signal })));
    const elapsedMs = performance.now() - started;
    const embeds = results.map((r, i) =>
      r.status === 'fulfilled' ? predictionEmbed(r.value, { name: chosen[i]!.name, elapsedMs }) : errorEmbed(chosen[i]!.name, r.reason),
    );
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    for (const f of failures) {
      if (!isExpected(f.reason)) services.log(`"Cat or dog?" error: ${f.reason instanceof Error ? (f.reason.stack ?? f.reason.message) : String(f.reason)}`);
    }
    const more = sources.length > chosen.length ? `I looked at the first ${chosen.length} of ${sources.length} images.` : undefined;
    await interaction.editReply({ content: more ?? '', embeds });
    return failures.length === results.length ? outcomeOf(failures[0]!.reason) : 'ok';
  },
});
