/** The answer to a photo: its verdict embed, or what went wrong with it. */
import type { APIEmbed } from 'discord.js';
import type { Prediction } from '../../model/types.ts';
import { backboneList, COLOURS, percent, probabilityBar, seconds, truncate } from './format.ts';
import { describeError } from './words.ts';

export const VERDICT_EMOJI = { dog: '🐶', cat: '🐱', neither: '🤷' } as const;

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
      { name: 'Backbones', value: `${backboneList(p.backbones)} (${p.precision})`, inline: true },
      { name: 'Time', value: seconds(options.elapsedMs ?? p.timings.totalMs), inline: true },
    ],
    footer: { text: `model: ${truncate(p.model, 100)}` },
  };
}

/** An embed for one photo that could not be classified (in a multi-photo answer). */
export function errorEmbed(name: string, err: unknown): APIEmbed {
  return { title: `⚠️ ${truncate(name, 80)}`, description: describeError(err), color: COLOURS.error };
}
