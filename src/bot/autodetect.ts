/**
 * Auto-detect: image attachments posted in a channel where a server manager switched it on
 * (/catdog-settings) get a reply with the verdicts, or just a 🐶/🐱 reaction (the guild's choice).
 * Up to 10 images per message. Needs the privileged Message Content intent: without it Discord
 * sends messages with no attachments and nothing happens.
 */
import { PermissionFlagsBits, type Message } from 'discord.js';
import type { Prediction } from '../model/types.ts';
import { outcomeOf, type Outcome } from '../metrics.ts';
import { attachmentSource, classifySource, isImageAttachment } from './classify.ts';
import { isExpected } from '../errors.ts';
import { cooldownWords, errorEmbed, predictionEmbed, VERDICT_EMOJI } from './replies.ts';
import type { BotServices } from './services.ts';

export const AUTO_DETECT_MAX_IMAGES = 10;

export class AutoDetect {
  /** Channels where a missing permission was already logged (logged once, not per message). */
  private readonly warned = new Set<string>();

  constructor(
    private readonly services: BotServices,
    private readonly signal: AbortSignal = new AbortController().signal,
  ) {}

  async handle(message: Message): Promise<void> {
    if (message.author.bot || message.system || !message.inGuild() || message.attachments.size === 0) return;
    const images = [...message.attachments.values()].filter(isImageAttachment).slice(0, AUTO_DETECT_MAX_IMAGES);
    if (images.length === 0) return;
    const { store, gate, metrics, config, log } = this.services;
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

    let leave: () => void;
    try {
      leave = gate.enter();
    } catch {
      return;
    }
    const started = performance.now();
    let outcome: Outcome = 'ok';
    try {
      if (config.cooldownSeconds > 0) {
        const check = await store.cooldowns.take(message.author.id, config.cooldownSeconds);
        if (!check.allowed) {
          outcome = 'cooldown';
          if (check.notify) {
            if (style === 'reply') {
              await message.reply({ content: cooldownWords(check.retryAfterMs), allowedMentions: { parse: [], repliedUser: false } });
            } else {
              await message.react('⏳');
            }
          }
          return;
        }
      }

      const results = await Promise.allSettled(
        images.map((a) =>
          classifySource(this.services, attachmentSource(a), { key: message.guildId, guildId: message.guildId, signal: this.signal }),
        ),
      );
      const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      for (const f of failures) {
        if (!isExpected(f.reason)) log(`auto-detect error on message ${message.id}: ${f.reason instanceof Error ? (f.reason.stack ?? f.reason.message) : String(f.reason)}`);
      }
      if (failures.length === results.length) outcome = outcomeOf(failures[0]!.reason);

      if (style === 'reply') {
        const elapsedMs = performance.now() - started;
        const embeds = results.map((r, i) =>
          r.status === 'fulfilled' ? predictionEmbed(r.value, { name: images[i]!.name, elapsedMs }) : errorEmbed(images[i]!.name, r.reason),
        );
        await message.reply({ embeds, allowedMentions: { parse: [], repliedUser: false } });
      } else {
        const labels = new Set(
          results.filter((r): r is PromiseFulfilledResult<Prediction> => r.status === 'fulfilled').map((r) => r.value.label),
        );
        for (const label of ['dog', 'cat', 'neither'] as const) {
          if (labels.has(label)) await message.react(VERDICT_EMOJI[label]);
        }
      }
    } catch (err) {
      outcome = 'error';
      log(`auto-detect failed on message ${message.id}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    } finally {
      metrics.observe('auto_detect', outcome, (performance.now() - started) / 1000);
      leave();
    }
  }
}
