/**
 * Line charts as PNGs: training and validation loss or accuracy per epoch, or a validation
 * score against a hyper-parameter. A y value that cannot be drawn (not finite, or not positive
 * on a log axis) leaves a gap in its line instead of failing the chart.
 */
import sharp from 'sharp';
import { chartFrame, CHART_HEIGHT, CHART_WIDTH, linearAxis, logAxis, px, svgDocument, svgText, svgToPng, type ChartOptions, type Point } from './svg.ts';

export interface LineChartOptions extends ChartOptions {
  /** Base-10 log scale on y (losses spanning decades). Default false. */
  yLog?: boolean;
  /** Dots on the points; default: when a series has at most 60 points. */
  markers?: boolean;
}

/** The chart as an SVG document. */
export function lineChartSvg(o: LineChartOptions): string {
  const width = o.width ?? CHART_WIDTH;
  const height = o.height ?? CHART_HEIGHT;
  const drawable = ([x, y]: Point) => Number.isFinite(x) && Number.isFinite(y) && (!o.yLog || y > 0);
  const all = o.series.flatMap((s) => s.points.filter(drawable));
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const frame = chartFrame({
    width,
    height,
    title: o.title,
    xLabel: o.xLabel,
    yLabel: o.yLabel,
    xAxis: linearAxis(xs, { integer: xs.length > 0 && xs.every(Number.isInteger), ticks: 8 }),
    yAxis: o.yLog ? logAxis(ys) : linearAxis(ys, { pad: 0.05 }),
    legend: o.series.map((s) => ({ name: s.name, color: s.color, mark: 'line' as const })),
  });
  const body = [frame.svg];
  for (const s of o.series) {
    const points = [...s.points].sort((a, b) => a[0] - b[0]);
    // One sub-path per run of drawable points: a NaN epoch breaks the line there.
    let d = '';
    let pen = false;
    for (const p of points) {
      if (!drawable(p)) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${px(frame.x(p[0]))} ${px(frame.y(p[1]))}`;
      pen = true;
    }
    if (d) body.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2.5" stroke-linejoin="round" stroke-linecap="round"/>`);
    if (o.markers ?? s.points.length <= 60) {
      for (const p of points.filter(drawable)) {
        body.push(`<circle cx="${px(frame.x(p[0]))}" cy="${px(frame.y(p[1]))}" r="3.5" fill="${s.color}" stroke="#ffffff" stroke-width="1"/>`);
      }
    }
  }
  if (!all.length) body.push(svgText(frame.plot.x + frame.plot.width / 2, frame.plot.y + frame.plot.height / 2, 'no data', { anchor: 'middle', size: 14 }));
  return svgDocument(width, height, body.join(''));
}

/** The chart as a PNG of `width` x `height` (default 800 x 520). */
export async function lineChartPng(o: LineChartOptions): Promise<Buffer> {
  return svgToPng(lineChartSvg(o));
}

/**
 * Images placed left to right, top-aligned on white, `gap` pixels apart (default 0: charts have
 * their own margins). The result is as wide as all of them and as tall as the tallest.
 */
export async function sideBySidePng(pngs: Buffer[], opts: { gap?: number } = {}): Promise<Buffer> {
  if (!pngs.length) throw new RangeError('sideBySidePng needs at least one image');
  const gap = opts.gap ?? 0;
  const sizes = await Promise.all(
    pngs.map(async (png) => {
      const m = await sharp(png).metadata();
      return { width: m.width, height: m.height };
    }),
  );
  const width = sizes.reduce((sum, s) => sum + s.width, 0) + gap * (pngs.length - 1);
  const height = Math.max(...sizes.map((s) => s.height));
  let left = 0;
  const layers = pngs.map((input, i) => {
    const layer = { input, left, top: 0 };
    left += sizes[i]!.width + gap;
    return layer;
  });
  return sharp({ create: { width, height, channels: 3, background: '#ffffff' } })
    .composite(layers)
    .png()
    .toBuffer();
}
