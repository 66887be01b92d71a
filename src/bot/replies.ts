/**
 * What the bot says: prediction embeds, and every error turned into words for people, in one place.
 */
import type { APIEmbed } from 'discord.js';
import { CatdogError } from '../errors.ts';
import type { BackboneName, Prediction } from '../model/types.ts';

/** A mistake in how a command was used (missing option, wrong channel…); the message is the answer. */
export class UsageError extends CatdogError {
  constructor(message: string) {
    super('usage', message);
  }
}

const BACKBONE_TITLES: Record<BackboneName, string> = {
  resnet50: 'ResNet50',
  inception_v3: 'InceptionV3',
  xception: 'Xception',
};

const COLOURS = { dog: 0xe67e22, cat: 0x9b59b6, neither: 0x95a5a6, error: 0xe74c3c } as const;

export const VERDICT_EMOJI = { dog: '🐶', cat: '🐱', neither: '🤷' } as const;

/** A 10-cell bar for a probability in [0, 1]. */
export function probabilityBar(p: number, cells = 10): string {
  const filled = Math.max(0, Math.min(cells, Math.round(p * cells)));
  return '█'.repeat(filled) + '░'.repeat(cells - filled);
}

export function percent(p: number): string {
  return `${Math.round(p * 100)}%`;
}

export function backboneList(backbones: readonly BackboneName[]): string {
  return backbones.map((b) => BACKBONE_TITLES[b] ?? b).join(' + ') || 'none';
}

export function seconds(ms: number): string {
  return ms < 1000 ? `${(ms / 1000).toFixed(2)} s` : `${(ms / 1000).toFixed(1)} s`;
}

/** One line: "🐶 Dog — 87% dog". */
export function verdictLine(p: Prediction): string {
  const word = p.label === 'dog' ? 'Dog' : p.label === 'cat' ? 'Cat' : 'Neither a cat nor a dog';
  return `${VERDICT_EMOJI[p.label]} ${word} — ${percent(p.dog)} dog`;
}

/** The answer to one photo: verdict, dog probability with a bar, backbones, time taken. */
export function predictionEmbed(p: Prediction, options: { name?: string; elapsedMs?: number } = {}): APIEmbed {
  const title =
    p.label === 'dog' ? `${VERDICT_EMOJI.dog} Dog` : p.label === 'cat' ? `${VERDICT_EMOJI.cat} Cat` : `${VERDICT_EMOJI.neither} Neither a cat nor a dog`;
  const lines = [`Dog probability: **${percent(p.dog)}**`, `\`${probabilityBar(p.dog)}\``];
  if (p.label === 'neither') {
    const top = p.imagenetTop[0];
    lines.unshift(`This photo does not seem to show a cat or a dog${top ? ` (it looks more like: ${top.label})` : ''}.`);
  }
  return {
    title: options.name ? `${title} · ${truncate(options.name, 60)}` : title,
    description: lines.join('\n'),
    color: COLOURS[p.label],
    fields: [
      { name: 'Backbones', value: backboneList(p.backbones), inline: true },
      { name: 'Time', value: seconds(options.elapsedMs ?? p.timings.totalMs), inline: true },
    ],
    footer: { text: `model: ${truncate(p.model, 100)}` },
  };
}

/** An embed for one photo that could not be classified (in a multi-photo answer). */
export function errorEmbed(name: string, err: unknown): APIEmbed {
  return { title: `⚠️ ${truncate(name, 80)}`, description: describeError(err), color: COLOURS.error };
}

/** True for errors that are the user's input or the moment (answered politely, not logged as faults). */
export function isExpected(err: unknown): boolean {
  return err instanceof CatdogError && EXPECTED.has(err.code);
}

const EXPECTED = new Set([
  'unsupported_image',
  'image_too_large',
  'image_dimensions_too_large',
  'host_not_allowed',
  'download_failed',
  'busy',
  'shutting_down',
  'usage',
]);

/** Any error, in words for the person who asked. Unexpected ones get a generic sentence (and are logged by the caller). */
export function describeError(err: unknown): string {
  if (err instanceof CatdogError) {
    switch (err.code) {
      case 'unsupported_image':
        return `🙀 I can't read that as a photo. ${err.message}`;
      case 'image_too_large':
      case 'image_dimensions_too_large':
        return `📏 That photo is too big for me. ${err.message}`;
      case 'host_not_allowed':
        return `🔒 ${err.message}`;
      case 'download_failed':
        return `📡 ${err.message}`;
      case 'busy':
        return `⏳ ${err.message}`;
      case 'shutting_down':
        return `🔁 ${err.message}`;
      case 'usage':
        return err.message;
      case 'no_head':
        return "😿 I have no trained model yet, so I can't tell cats from dogs. The people running me have been told.";
      default:
        break;
    }
  }
  return '😿 Something went wrong on my side. It has been logged; please try again later.';
}

export function cooldownWords(retryAfterMs: number): string {
  const s = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return `⏳ Easy there! You can ask me again in ${s} s.`;
}

function truncate(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`;
}
