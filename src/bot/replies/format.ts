/** Small formatters shared by the bot's messages: bars, percentages, durations, colours. */
import { BACKBONES } from '../../model/backbones/index.ts';
import type { BackboneName } from '../../model/types.ts';

export const COLOURS = { dog: 0xe67e22, cat: 0x9b59b6, neither: 0x95a5a6, error: 0xe74c3c } as const;

export const JOB_COLOURS = { running: 0x3498db, succeeded: 0x2ecc71, failed: 0xe74c3c, cancelled: 0x95a5a6, interrupted: 0xf1c40f } as const;

/** A 10-cell bar for a probability in [0, 1]. */
export function probabilityBar(p: number, cells = 10): string {
  const filled = Math.max(0, Math.min(cells, Math.round(p * cells)));
  return '█'.repeat(filled) + '░'.repeat(cells - filled);
}

export function percent(p: number): string {
  return `${Math.round(p * 100)}%`;
}

export function backboneList(backbones: readonly BackboneName[]): string {
  return backbones.map((b) => (Object.hasOwn(BACKBONES, b) ? BACKBONES[b].title : b)).join(' + ') || 'none';
}

export function seconds(ms: number): string {
  return ms < 1000 ? `${(ms / 1000).toFixed(2)} s` : `${(ms / 1000).toFixed(1)} s`;
}

export function truncate(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`;
}

/** "3 min 5 s", "45 s", "1 h 2 min". */
export function duration(sec: number): string {
  const s = Math.max(0, Math.round(sec));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ''}`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)} h${m % 60 ? ` ${m % 60} min` : ''}`;
}

export function ago(iso: string, now = Date.now()): string {
  return `${duration((now - Date.parse(iso)) / 1000)} ago`;
}

/** A bar for a fraction in [0, 1], 20 cells by default. */
export function progressBar(fraction: number, cells = 20): string {
  return probabilityBar(Number.isFinite(fraction) ? fraction : 0, cells);
}

export function pct2(x: number): string {
  return `${(x * 100).toFixed(2)}%`;
}

export function metricLine(loss: number | null, acc: number | null): string {
  return `log loss **${loss === null ? '—' : loss.toFixed(4)}** · accuracy **${acc === null ? '—' : pct2(acc)}**`;
}
