/**
 * One photo from Discord (an attachment or a url: link) → a Prediction: cheap checks on what
 * Discord tells us, the allowlisted download, the shared queue, then the classifier. Counted in the
 * guild's stats; the photo and its URL are never stored.
 */
import type { APIEmbed, Attachment } from 'discord.js';
import { ImageDimensionsTooLarge, ImageTooLarge, isExpected } from '../errors.ts';
import { outcomeOf, type Outcome } from '../metrics.ts';
import type { Prediction } from '../model/types.ts';
import { downloadImage } from './download.ts';
import { errorEmbed, predictionEmbed } from './replies/prediction.ts';
import type { BotServices } from './services.ts';

export interface ImageSource {
  url: string;
  name: string;
  /** Bytes, as Discord reports them (attachments only). */
  size?: number | null;
  width?: number | null;
  height?: number | null;
  contentType?: string | null;
}

export function attachmentSource(a: Attachment): ImageSource {
  return { url: a.url, name: a.name, size: a.size, width: a.width, height: a.height, contentType: a.contentType };
}

/** Whether an attachment is a picture worth classifying (Discord gives pictures a size in pixels). */
export function isImageAttachment(a: Attachment): boolean {
  return (a.contentType?.startsWith('image/') ?? false) || (a.width !== null && a.height !== null && a.width > 0);
}

export interface ClassifyContext {
  /** Queue key: the guild (or the user in a DM), for the per-guild concurrency cap. */
  key: string;
  /** Guild whose stats count this photo; null in DMs. */
  guildId: string | null;
  signal?: AbortSignal;
}

export async function classifySource(services: BotServices, source: ImageSource, ctx: ClassifyContext): Promise<Prediction> {
  const { config, classifier, metrics, store } = services;
  const { maxImageBytes, maxImagePixels, downloadTimeoutMs } = config.limits;
  // What Discord already told us lets us refuse before downloading anything.
  if (source.size && source.size > maxImageBytes) throw new ImageTooLarge(source.size, maxImageBytes);
  if (source.width && source.height && source.width * source.height > maxImagePixels) {
    throw new ImageDimensionsTooLarge(source.width, source.height, maxImagePixels);
  }
  // A place in the queue is taken before the first byte is fetched (Busy at once otherwise), and
  // the download waits for one of the bot's download permits.
  const prediction = await classifier.classifyFetched(
    () => downloadImage(source.url, { allowedHosts: config.attachmentHosts, maxBytes: maxImageBytes, timeoutMs: downloadTimeoutMs, signal: ctx.signal }),
    { key: ctx.key, signal: ctx.signal },
  );
  metrics.classified(prediction.label);
  if (ctx.guildId) await store.stats.record(ctx.guildId, prediction.label);
  return prediction;
}

export interface ManyResult {
  /** Per photo, in order: its verdict or why it failed. */
  results: PromiseSettledResult<Prediction>[];
  /** One embed per photo: the verdict, or what went wrong in words. */
  embeds: APIEmbed[];
  /** ok unless every photo failed (then the first failure's outcome). */
  outcome: Outcome;
}

/**
 * Several photos of one message, the way every door that takes several answers them: all settled
 * (one failure does not sink the others), an embed each, unexpected failures logged as
 * `<what>: <detail>`, and one outcome for the metrics. `started` times the answers.
 */
export async function classifyMany(
  services: BotServices,
  sources: readonly ImageSource[],
  ctx: ClassifyContext & { what: string; started: number },
): Promise<ManyResult> {
  const results = await Promise.allSettled(sources.map((s) => classifySource(services, s, ctx)));
  const elapsedMs = performance.now() - ctx.started;
  const embeds = results.map((r, i) =>
    r.status === 'fulfilled' ? predictionEmbed(r.value, { name: sources[i]!.name, elapsedMs }) : errorEmbed(sources[i]!.name, r.reason),
  );
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  for (const f of failures) {
    if (!isExpected(f.reason)) services.log(`${ctx.what}: ${f.reason instanceof Error ? (f.reason.stack ?? f.reason.message) : String(f.reason)}`);
  }
  return { results, embeds, outcome: failures.length && failures.length === results.length ? outcomeOf(failures[0]!.reason) : 'ok' };
}
