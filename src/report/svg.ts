/**
 * Small building blocks for the report charts: text, axes with "nice" ticks (linear and log),
 * a legend row, a chart layout, and SVG → PNG through sharp (librsvg). Charts are plain SVG
 * strings; nothing here draws data, the chart modules do.
 */
import sharp from 'sharp';

export const FONT_FAMILY = "'DejaVu Sans', 'Liberation Sans', Arial, Helvetica, sans-serif";
export const INK = '#222222';
export const GRID = '#e6e6e6';
export const FRAME = '#888888';

/** Default size of one chart, in pixels. */
export const CHART_WIDTH = 800;
export const CHART_HEIGHT = 520;

export type Point = [number, number];

export interface Series {
  name: string;
  /** Any SVG colour; '#rrggbb' keeps the legend and the data exactly this colour. */
  color: string;
  points: Point[];
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  width?: number;
  height?: number;
}

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Escapes text for an SVG text node or attribute value. */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** A coordinate for SVG: at most one decimal, no "-0". */
export function px(v: number): string {
  const r = Math.round(v * 10) / 10;
  return Object.is(r, -0) ? '0' : String(r);
}

/** Rough width of a line of text (DejaVu Sans averages about 0.6 em per character). */
export function textWidth(s: string, size: number): number {
  return [...s].length * size * 0.6;
}

/** The text, cut with an ellipsis so that it fits `maxWidth` pixels at `size`. */
export function fitText(s: string, maxWidth: number, size: number): string {
  if (textWidth(s, size) <= maxWidth) return s;
  const chars = [...s];
  const keep = Math.max(0, Math.floor(maxWidth / (size * 0.6)) - 1);
  return `${chars.slice(0, keep).join('')}…`;
}

export interface TextStyle {
  size?: number;
  anchor?: 'start' | 'middle' | 'end';
  weight?: 'normal' | 'bold';
  fill?: string;
  /** Degrees, about (x, y). */
  rotate?: number;
}

/** One line of text; (x, y) is the baseline point at the anchor. */
export function svgText(x: number, y: number, content: string, style: TextStyle = {}): string {
  const { size = 12, anchor = 'start', weight = 'normal', fill = INK, rotate } = style;
  const transform = rotate ? ` transform="rotate(${rotate} ${px(x)} ${px(y)})"` : '';
  return (
    `<text x="${px(x)}" y="${px(y)}" font-size="${size}" text-anchor="${anchor}"` +
    `${weight === 'bold' ? ' font-weight="bold"' : ''} fill="${fill}"${transform}>${escapeXml(content)}</text>`
  );
}

/** A whole SVG document with a white background and the report font. */
export function svgDocument(width: number, height: number, body: string, background = '#ffffff'): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
    `font-family="${escapeXml(FONT_FAMILY)}"><rect width="100%" height="100%" fill="${background}"/>${body}</svg>`
  );
}

/** Rasterises an SVG document at 1 SVG pixel = 1 image pixel. */
export async function svgToPng(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg)).png().toBuffer();
}

/** An axis: its data range after rounding to ticks, the ticks, and how they read. */
export interface Axis {
  min: number;
  max: number;
  ticks: number[];
  log: boolean;
  format(v: number): string;
}

/** 1, 2 or 5 times a power of ten: the tick step nearest `span / count` from above. */
export function niceStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const residual = raw / magnitude;
  const factor = residual <= 1 ? 1 : residual <= 2 ? 2 : residual <= 5 ? 5 : 10;
  return factor * magnitude;
}

function decimalsOf(step: number): number {
  return Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
}

function formatLinear(v: number, step: number): string {
  if (Math.abs(v) >= 1e6 || (v !== 0 && Math.abs(v) < 1e-4)) return v.toExponential(1);
  return v.toFixed(decimalsOf(step));
}

/** The smallest and largest finite value, or null when there is none. */
export function extent(values: Iterable<number>): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (!Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : null;
}

export interface LinearAxisOptions {
  /** About how many ticks (default 6). */
  ticks?: number;
  /** Start at zero when all values are positive (sizes, counts). */
  zero?: boolean;
  /** Room around the data before rounding to ticks, as a fraction of the span (default 0). */
  pad?: number;
  /** Ticks only on whole numbers (epochs). */
  integer?: boolean;
}

/** A linear axis over the values, widened to round tick values. */
export function linearAxis(values: Iterable<number>, o: LinearAxisOptions = {}): Axis {
  let [lo, hi] = extent(values) ?? [0, 1];
  if (o.zero && lo > 0) lo = 0;
  if (o.zero && hi < 0) hi = 0;
  if (lo === hi) {
    const d = Math.abs(lo) * 0.1 || 1;
    lo -= d;
    hi += d;
  }
  const pad = (hi - lo) * (o.pad ?? 0);
  if (!(o.zero && lo === 0)) lo -= pad;
  hi += pad;
  let step = niceStep(hi - lo, o.ticks ?? 6);
  if (o.integer) step = Math.max(1, Math.round(step));
  const min = Math.floor(lo / step + 1e-9) * step;
  const max = Math.ceil(hi / step - 1e-9) * step;
  const ticks: number[] = [];
  const digits = decimalsOf(step);
  for (let i = 0; min + i * step <= max + step * 1e-9; i++) ticks.push(Number((min + i * step).toFixed(digits + 2)));
  return { min, max, ticks, log: false, format: (v) => formatLinear(v, step) };
}

/**
 * A base-10 log axis over the positive values (the others cannot be drawn on it), from a power
 * of ten to a power of ten; within three decades or fewer, 2 and 5 times each power are ticks too.
 */
export function logAxis(values: Iterable<number>): Axis {
  const positive = [...values].filter((v) => v > 0 && Number.isFinite(v));
  const [lo, hi] = extent(positive) ?? [0.1, 1];
  const a = Math.floor(Math.log10(lo) + 1e-9);
  let b = Math.ceil(Math.log10(hi) - 1e-9);
  if (b <= a) b = a + 1;
  const ticks: number[] = [];
  const multiples = b - a <= 3 ? [1, 2, 5] : [1];
  for (let e = a; e <= b; e++) {
    for (const m of multiples) {
      const v = Number((m * 10 ** e).toPrecision(6));
      if (v <= 10 ** b * (1 + 1e-9)) ticks.push(v);
    }
  }
  return { min: 10 ** a, max: 10 ** b, ticks, log: true, format: (v) => String(Number(v.toPrecision(6))) };
}

/** Maps data values of an axis onto pixels from `from` (at axis.min) to `to` (at axis.max). */
export function scaleOf(axis: Axis, from: number, to: number): (v: number) => number {
  if (axis.log) {
    const l0 = Math.log10(axis.min);
    const l1 = Math.log10(axis.max);
    return (v) => from + ((Math.log10(v) - l0) / (l1 - l0)) * (to - from);
  }
  return (v) => from + ((v - axis.min) / (axis.max - axis.min)) * (to - from);
}

const TITLE_SIZE = 16;
const LABEL_SIZE = 13;
const TICK_SIZE = 11;

export interface ChartFrame {
  plot: Box;
  x: (v: number) => number;
  y: (v: number) => number;
  /** Title, legend, grid, ticks, frame and axis labels: everything but the data. */
  svg: string;
}

/**
 * Lays out a chart of `width` x `height`: the title on top, the legend row under it, the plot
 * area (with room on the left for the y tick labels) and the axis labels; draws all but the data.
 */
export function chartFrame(o: {
  width: number;
  height: number;
  title: string;
  xLabel: string;
  yLabel: string;
  xAxis: Axis;
  yAxis: Axis;
  legend: LegendEntry[];
}): ChartFrame {
  const yTickWidth = Math.max(...o.yAxis.ticks.map((t) => textWidth(o.yAxis.format(t), TICK_SIZE)), 10);
  const left = Math.ceil(28 + yTickWidth + 10);
  const top = o.legend.length ? 66 : 46;
  const plot: Box = { x: left, y: top, width: o.width - left - 24, height: o.height - top - 54 };
  const x = scaleOf(o.xAxis, plot.x, plot.x + plot.width);
  const y = scaleOf(o.yAxis, plot.y + plot.height, plot.y);
  const parts: string[] = [];
  parts.push(svgText(o.width / 2, 28, fitText(o.title, o.width - 24, TITLE_SIZE), { size: TITLE_SIZE, anchor: 'middle', weight: 'bold' }));
  if (o.legend.length) parts.push(legendRow(o.legend, plot.x, 50, plot.width));
  parts.push(`<g stroke="${GRID}" stroke-width="1">`);
  for (const t of o.xAxis.ticks) parts.push(`<line x1="${px(x(t))}" y1="${px(plot.y)}" x2="${px(x(t))}" y2="${px(plot.y + plot.height)}"/>`);
  for (const t of o.yAxis.ticks) parts.push(`<line x1="${px(plot.x)}" y1="${px(y(t))}" x2="${px(plot.x + plot.width)}" y2="${px(y(t))}"/>`);
  parts.push('</g>');
  parts.push(`<rect x="${px(plot.x)}" y="${px(plot.y)}" width="${px(plot.width)}" height="${px(plot.height)}" fill="none" stroke="${FRAME}"/>`);
  parts.push(`<g stroke="${FRAME}">`);
  for (const t of o.xAxis.ticks) parts.push(`<line x1="${px(x(t))}" y1="${px(plot.y + plot.height)}" x2="${px(x(t))}" y2="${px(plot.y + plot.height + 5)}"/>`);
  for (const t of o.yAxis.ticks) parts.push(`<line x1="${px(plot.x - 5)}" y1="${px(y(t))}" x2="${px(plot.x)}" y2="${px(y(t))}"/>`);
  parts.push('</g>');
  for (const t of o.xAxis.ticks) parts.push(svgText(x(t), plot.y + plot.height + 19, o.xAxis.format(t), { size: TICK_SIZE, anchor: 'middle' }));
  for (const t of o.yAxis.ticks) parts.push(svgText(plot.x - 8, y(t) + 4, o.yAxis.format(t), { size: TICK_SIZE, anchor: 'end' }));
  parts.push(svgText(plot.x + plot.width / 2, o.height - 12, fitText(o.xLabel, plot.width, LABEL_SIZE), { size: LABEL_SIZE, anchor: 'middle' }));
  parts.push(svgText(18, plot.y + plot.height / 2, fitText(o.yLabel, plot.height, LABEL_SIZE), { size: LABEL_SIZE, anchor: 'middle', rotate: -90 }));
  return { plot, x, y, svg: parts.join('') };
}

export interface LegendEntry {
  name: string;
  color: string;
  /** A dot for scatter series, a short line for line series. */
  mark: 'dot' | 'line';
}

/** A legend laid out in one row from (x, baseline y), names shortened to fit `maxWidth` in all. */
export function legendRow(entries: LegendEntry[], x: number, y: number, maxWidth: number): string {
  const size = 12;
  const perEntry = maxWidth / Math.max(1, entries.length);
  const parts: string[] = [];
  let at = x;
  for (const e of entries) {
    const name = fitText(e.name, Math.min(perEntry - 30, 260), size);
    if (e.mark === 'dot') parts.push(`<circle cx="${px(at + 7)}" cy="${px(y - 4)}" r="5" fill="${e.color}"/>`);
    else parts.push(`<line x1="${px(at)}" y1="${px(y - 4)}" x2="${px(at + 16)}" y2="${px(y - 4)}" stroke="${e.color}" stroke-width="3"/>`);
    parts.push(svgText(at + 22, y, name, { size }));
    at += 22 + textWidth(name, size) + 18;
  }
  return parts.join('');
}
