/**
 * Scatter plot as a PNG, e.g. photo width against height with cats and dogs in two colours.
 * Markers are half transparent so that dense areas read darker, and the series are drawn
 * interleaved so that no class hides another just by being drawn last.
 */
import { chartFrame, CHART_HEIGHT, CHART_WIDTH, linearAxis, px, svgDocument, svgText, svgToPng, type ChartOptions } from './svg.ts';

export interface ScatterOptions extends ChartOptions {
  /** Start both axes at zero (for sizes and counts). Default false. */
  zero?: boolean;
  /** Marker radius in pixels (default 3). */
  radius?: number;
  /** Marker opacity, 0..1 (default 0.5). */
  opacity?: number;
}

/** The plot as an SVG document. */
export function scatterPlotSvg(o: ScatterOptions): string {
  const width = o.width ?? CHART_WIDTH;
  const height = o.height ?? CHART_HEIGHT;
  const finite = o.series.map((s) => s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
  const all = finite.flat();
  const axisOptions = { zero: o.zero, pad: 0.03 };
  const frame = chartFrame({
    width,
    height,
    title: o.title,
    xLabel: o.xLabel,
    yLabel: o.yLabel,
    xAxis: linearAxis(all.map((p) => p[0]), axisOptions),
    yAxis: linearAxis(all.map((p) => p[1]), axisOptions),
    legend: o.series.map((s) => ({ name: s.name, color: s.color, mark: 'dot' as const })),
  });
  // Interleave: each point is drawn at its relative position within its own series.
  const order = finite.flatMap((points, s) => points.map((p, i) => ({ p, s, at: (i + 0.5) / points.length })));
  order.sort((a, b) => a.at - b.at || a.s - b.s);
  const r = px(o.radius ?? 3);
  const marks = order.map(({ p, s }) => `<circle cx="${px(frame.x(p[0]))}" cy="${px(frame.y(p[1]))}" r="${r}" fill="${o.series[s]!.color}"/>`);
  const body = [frame.svg, `<g fill-opacity="${o.opacity ?? 0.5}">`, ...marks, '</g>'];
  if (!all.length) body.push(svgText(frame.plot.x + frame.plot.width / 2, frame.plot.y + frame.plot.height / 2, 'no data', { anchor: 'middle', size: 14 }));
  return svgDocument(width, height, body.join(''));
}

/** The plot as a PNG of `width` x `height` (default 800 x 520). */
export async function scatterPlotPng(o: ScatterOptions): Promise<Buffer> {
  return svgToPng(scatterPlotSvg(o));
}
