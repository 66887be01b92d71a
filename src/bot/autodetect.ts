/**
 * Auto-detect: image attachments posted in a channel where a server manager switched it on
 * (/catdog-settings) get a reply with the verdicts, or just a 🐶/🐱 reaction (the guild's choice).
 * Up to 10 images per message. Needs the privileged Message Content intent: without it Discord
 * sends messages with no attachments and nothing happens.
 */
import { PermissionFlagsBits, type Message } from 'discord.js';
import type { Prediction } from '../model/types.ts';
import { attachmentSource, classifyMany, isImageAttachment } from './classify.ts';
import { Guard } from './guard.ts';
import { VERDICT_EMOJI } from './replies/prediction.ts';
import type { BotServices } from './services.ts';

export const AUTO_DETECT_MAX_IMAGES = 10;

export class AutoDetect {
  /** Channels where a missing permission was already logged (logged once, not per message). */
  private readonly warned = new Set<string>();
  private readonly guard: Guard;
  /** Users told in words that they are going too fast, since their last answer (bounded). */
  private readonly told = new Set<string>();

  private remember(userId: string): void {
    if (this.told.size >= 10_000) this.told.delete(this.told.values().next().value!);
    this.told.add(userId);
  }

  constructor(
    private readonly services: BotServices,
    private readonly signal: AbortSignal = new AbortController().signal,
  ) {
    this.guard = new Guard(services);
  }

  async handle(message: Message): Promise<void> {
    if (message.author.bot || message.system || !message.inGuild() || message.attachments.size === 0) return;
    const images = [...message.attachments.values()].filter(isImageAttachment).slice(0, AUTO_DETECT_MAX_IMAGES);
    if (images.length === 0) return;
    const { store, gate, log } = this.services;
    if (gate.isClosed) return;
    const { enabled, style } = await store.settings.autoDetect(message.guildId, message.channelId);
    if (!enabled) return;

    const me = message.guild.members.me;
    const perms = me ? message.channel.permissionsFor(me) : null;
    const needed =
      style === 'reply'
        ? [PermissionFlagsBits.ViewChannel, PermissionFlagsBits.SendMessages, PermissionFlagsBits.EmbedLinks, PermissionFlagsBits.ReadMessageHistory]
        : [PermissionFlagsBits.ViewChannel, PermissionFlagsBits.AddReactions, PermissionFlagsBits.ReadMessageHistory];
    if (perms && !perms.has(needed)) {
      if (!this.warned.has(message.channelId)) {
        this.warned.add(message.channelId);
        log(`auto-detect: missing permissions in channel ${message.channelId} (guild ${message.guildId}) for ${style}; skipping`);
      }
      return;
    }

    const guard = this.guard;
    await guard.run(
      {
        surface: 'auto_detect',
        onClosed: async () => {}, // stopping: the message is left alone
        onFault: (err) => log(`auto-detect failed on message ${message.id}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`),
      },
      async () => {
        const started = performance.now();
        // Never silent: the first refusal since the last answer says when (in reply style), the
        // others get a ⏳ reaction, so a burst of posts does not turn into a burst of replies.
        const author = message.author.id;
        const allowed = await guard.cooldown(author, async (words) => {
          if (style === 'reply' && !this.told.has(author)) {
            this.remember(author);
            await message.reply({ content: words, allowedMentions: { parse: [], repliedUser: false } });
          } else {
            await message.react('⏳');
          }
        });
        if (!allowed) return 'cooldown';
        this.told.delete(author);

        const many = await classifyMany(this.services, images.map(attachmentSource), {
          key: message.guildId,
          guildId: message.guildId,
          signal: this.signal,
          what: `auto-detect error on message ${message.id}`,
          started,
        });
        if (style === 'reply') {
          await message.reply({ embeds: many.embeds, allowedMentions: { parse: [], repliedUser: false } });
        } else {
          const labels = new Set(
            many.results.filter((r): r is PromiseFulfilledResult<Prediction> => r.status === 'fulfilled').map((r) => r.value.label),
          );
          for (const label of ['dog', 'cat', 'neither'] as const) {
            if (labels.has(label)) await message.react(VERDICT_EMOJI[label]);
          }
        }
        return many.outcome;
      },
    );
  }
}
