import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contactSheetPng, LETTERBOX_FILL, sheetLayout, UNREADABLE_FILL } from '../../src/report/contact-sheet.ts';
import { lineChartPng, sideBySidePng } from '../../src/report/curves.ts';
import { scatterPlotPng } from '../../src/report/scatter.ts';
import { CHART_HEIGHT, CHART_WIDTH, escapeXml, linearAxis, logAxis } from '../../src/report/svg.ts';
import { CLASS_COLORS, inspectDataset, writeInspectReport, type InspectReport } from '../../src/train/inspect.ts';
import { jpegPhoto, makeZip } from '../helpers/datasets.ts';

type RGB = [number, number, number];

interface Raster {
  width: number;
  height: number;
  at(x: number, y: number): RGB;
}

async function raster(png: Buffer): Promise<Raster> {
  const meta = await sharp(png).metadata();
  expect(meta.format).toBe('png');
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return {
    width: info.width,
    height: info.height,
    at: (x, y) => {
      const i = (Math.round(y) * info.width + Math.round(x)) * 3;
      return [data[i]!, data[i + 1]!, data[i + 2]!];
    },
  };
}

function rgb(hex: string): RGB {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

const near = (a: RGB, b: RGB, tolerance = 10) => a.every((v, i) => Math.abs(v - b[i]!) <= tolerance);

/** Pixels of the colour inside the box, and their mean x. */
function find(r: Raster, color: string, box = { x: 0, y: 0, width: r.width, height: r.height }): { count: number; meanX: number } {
  const c = rgb(color);
  let count = 0;
  let sumX = 0;
  for (let y = box.y; y < box.y + box.height; y++) {
    for (let x = box.x; x < box.x + box.width; x++) {
      if (near(r.at(x, y), c)) {
        count++;
        sumX += x;
      }
    }
  }
  return { count, meanX: count ? sumX / count : NaN };
}

function distinctColours(r: Raster): number {
  const seen = new Set<string>();
  for (let y = 0; y < r.height; y += 3) for (let x = 0; x < r.width; x += 3) seen.add(r.at(x, y).join(','));
  return seen.size;
}

/** Below the title and legend rows of a chart: the plot area and axes only. */
const belowLegend = (r: Raster) => ({ x: 0, y: 70, width: r.width, height: r.height - 70 });

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'catdog-report-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('svg helpers', () => {
  it('escapes text', () => {
    expect(escapeXml(`<cat & "dog's">`)).toBe('&lt;cat &amp; &quot;dog&apos;s&quot;&gt;');
  });

  it('rounds axes to nice ticks covering the data', () => {
    const a = linearAxis([3, 97]);
    expect(a.min).toBeLessThanOrEqual(3);
    expect(a.max).toBeGreaterThanOrEqual(97);
    expect(a.ticks).toEqual([0, 20, 40, 60, 80, 100]);
    expect(linearAxis([1, 8], { integer: true, ticks: 8 }).ticks).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(linearAxis([200, 200], { zero: true }).ticks[0]).toBe(0);
    const log = logAxis([0.03, 0.2, 0, -1]);
    expect([log.min, log.max]).toEqual([0.01, 1]);
    expect(log.ticks).toEqual([0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1]);
  });
});

describe('scatter plot', () => {
  it('is a PNG of the chart size with cats and dogs in their colours where their points are', async () => {
    const cats: [number, number][] = Array.from({ length: 60 }, (_, i) => [100 + (i % 3), 120 + (i % 2)]);
    const dogs: [number, number][] = Array.from({ length: 60 }, (_, i) => [480 + (i % 3), 460 + (i % 2)]);
    const png = await scatterPlotPng({
      title: 'width vs height',
      xLabel: 'width',
      yLabel: 'height',
      series: [
        { name: 'cats', color: CLASS_COLORS.cat, points: cats },
        { name: 'dogs', color: CLASS_COLORS.dog, points: dogs },
      ],
    });
    const r = await raster(png);
    expect([r.width, r.height]).toEqual([CHART_WIDTH, CHART_HEIGHT]);
    expect(distinctColours(r)).toBeGreaterThan(3);
    const cat = find(r, CLASS_COLORS.cat, belowLegend(r));
    const dog = find(r, CLASS_COLORS.dog, belowLegend(r));
    expect(cat.count).toBeGreaterThan(10);
    expect(dog.count).toBeGreaterThan(10);
    expect(cat.meanX).toBeLessThan(dog.meanX); // cats were placed left of dogs
  });

  it('takes another size, and draws an empty plot without failing', async () => {
    const r = await raster(await scatterPlotPng({ title: 't', xLabel: 'x', yLabel: 'y', width: 400, height: 300, series: [{ name: 'none', color: '#ff0000', points: [] }] }));
    expect([r.width, r.height]).toEqual([400, 300]);
    expect(distinctColours(r)).toBeGreaterThan(2);
  });
});

describe('line chart', () => {
  const epochs = (f: (e: number) => number): [number, number][] => Array.from({ length: 8 }, (_, i) => [i + 1, f(i + 1)]);

  it('draws each series in its colour, on linear and log scales', async () => {
    for (const yLog of [false, true]) {
      const png = await lineChartPng({
        title: 'log loss',
        xLabel: 'epoch',
        yLabel: 'binary cross-entropy',
        yLog,
        series: [
          { name: 'train', color: '#1f77b4', points: epochs((e) => 0.5 / e) },
          { name: 'validation', color: '#d62728', points: epochs((e) => 0.6 / e + 0.02) },
        ],
      });
      const r = await raster(png);
      expect([r.width, r.height]).toEqual([CHART_WIDTH, CHART_HEIGHT]);
      expect(find(r, '#1f77b4', belowLegend(r)).count).toBeGreaterThan(200);
      expect(find(r, '#d62728', belowLegend(r)).count).toBeGreaterThan(200);
    }
  });

  it('leaves a gap for a value it cannot draw instead of failing', async () => {
    const png = await lineChartPng({
      title: 'gaps',
      xLabel: 'epoch',
      yLabel: 'loss',
      yLog: true,
      series: [{ name: 'train', color: '#2ca02c', points: [[1, 0.5], [2, Number.NaN], [3, 0], [4, 0.1], [5, 0.05]] }],
    });
    const r = await raster(png);
    expect(find(r, '#2ca02c', belowLegend(r)).count).toBeGreaterThan(50);
  });

  it('puts charts side by side', async () => {
    const a = await lineChartPng({ title: 'a', xLabel: 'x', yLabel: 'y', series: [{ name: 's', color: '#9467bd', points: epochs((e) => e) }] });
    const b = await lineChartPng({ title: 'b', xLabel: 'x', yLabel: 'y', width: 400, height: 300, series: [{ name: 's', color: '#2ca02c', points: epochs((e) => -e) }] });
    const r = await raster(await sideBySidePng([a, b]));
    expect([r.width, r.height]).toEqual([CHART_WIDTH + 400, CHART_HEIGHT]);
    expect(find(r, '#9467bd', { x: 0, y: 70, width: CHART_WIDTH, height: CHART_HEIGHT - 70 }).count).toBeGreaterThan(100);
    expect(find(r, '#2ca02c', { x: CHART_WIDTH, y: 0, width: 400, height: 300 }).count).toBeGreaterThan(100);
    expect(r.at(CHART_WIDTH + 200, 400)).toEqual([255, 255, 255]); // under the shorter chart
  });
});

describe('contact sheet', () => {
  it('letterboxes photos, and gives an undecodable one a grey tile instead of failing', async () => {
    const wide = await jpegPhoto(300, 100, '#d00000');
    const tall = await jpegPhoto(100, 300, '#0000d0');
    const truncated = (await jpegPhoto(200, 200, '#00a000')).subarray(0, 300);
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10" fill="red"/></svg>');
    const items = [
      { image: wide, caption: ['cat.1.jpg', 'p(dog)=0.97 label=cat'] },
      { image: tall, caption: ['dog.2.jpg'] },
      { image: Buffer.from('not a photo'), caption: ['broken.jpg', 'p(dog)=0.50'] },
      { image: truncated, caption: ['cut.jpg'] },
      { image: svg, caption: ['drawing.jpg'] },
    ];
    const opts = { thumb: 120, columns: 3, title: 'The worst errors' };
    const png = await contactSheetPng(items, opts);
    const layout = sheetLayout(items.length, 2, opts);
    const r = await raster(png);
    expect([r.width, r.height]).toEqual([layout.width, layout.height]);
    expect([layout.columns, layout.rows]).toEqual([3, 2]);

    const letterbox = rgb(LETTERBOX_FILL);
    const t0 = layout.tile(0);
    expect(near(r.at(t0.x + 60, t0.y + 60), [208, 0, 0], 30)).toBe(true); // the photo, whole width
    expect(near(r.at(t0.x + 2, t0.y + 60), [208, 0, 0], 30)).toBe(true);
    expect(near(r.at(t0.x + 60, t0.y + 5), letterbox, 3)).toBe(true); // bars above and below, not cropped
    const t1 = layout.tile(1);
    expect(near(r.at(t1.x + 60, t1.y + 60), [0, 0, 208], 30)).toBe(true);
    expect(near(r.at(t1.x + 5, t1.y + 60), letterbox, 3)).toBe(true); // bars left and right
    for (const i of [2, 3, 4]) {
      const t = layout.tile(i);
      expect(near(r.at(t.x + 4, t.y + 4), rgb(UNREADABLE_FILL), 3)).toBe(true);
      expect(near(r.at(t.x + 115, t.y + 115), rgb(UNREADABLE_FILL), 3)).toBe(true);
    }
  });

  it('renders an empty sheet', async () => {
    const r = await raster(await contactSheetPng([], { title: 'No outliers' }));
    const layout = sheetLayout(0, 0, { title: 'No outliers' });
    expect([r.width, r.height]).toEqual([layout.width, layout.height]);
  });
});

describe('inspect', () => {
  let zip: string;
  beforeAll(async () => {
    const cat1 = await jpegPhoto(40, 30, '#aa5500');
    const dog4 = await jpegPhoto(80, 40, '#0055aa');
    zip = join(dir, 'small.zip');
    await writeFile(
      zip,
      makeZip([
        { name: 'train/cat.1.jpg', data: cat1 },
        { name: 'train/cat.2.jpg', data: await jpegPhoto(30, 40, '#aa6600') },
        { name: 'train/cat.3.jpg', data: await jpegPhoto(50, 50, '#aa7700') },
        { name: 'train/cat.9.jpg', data: cat1 }, // the same photo twice
        { name: 'train/dog.1.jpg', data: await sharp({ create: { width: 60, height: 20, channels: 3, background: '#003399' } }).png().toBuffer() },
        { name: 'train/dog.2.jpg', data: '<html><body>Not Found</body></html>' },
        { name: 'train/dog.3.jpg', data: Buffer.alloc(0) },
        { name: 'train/dog.4.jpg', data: dog4.subarray(0, dog4.length - 10) }, // cut off: header fine, end marker gone
        { name: 'train/dog.5.jpg', data: dog4.subarray(0, 120) }, // cut inside the header
        { name: 'test/1.jpg', data: await jpegPhoto(20, 20, '#777777') },
        { name: 'train/notes.txt', data: 'hello' },
      ]),
    );
  });

  it('counts photos per class, sizes from the headers, and lists unreadable files with the reason', async () => {
    const progress: [number, number][] = [];
    const report = await inspectDataset([zip], { onProgress: (d, t) => progress.push([d, t]), concurrency: 3 });
    expect(report.photos).toBe(10);
    expect(report.counts).toEqual({ cat: 4, dog: 5, test: 1 });
    expect(report.classes.cat).toEqual({ photos: 4, readable: 4, width: { min: 30, median: 40, mean: 40, max: 50 }, height: { min: 30, median: 35, mean: 37.5, max: 50 } });
    expect(report.classes.dog).toEqual({ photos: 5, readable: 2, width: { min: 60, median: 70, mean: 70, max: 80 }, height: { min: 20, median: 30, mean: 30, max: 40 } });
    expect(report.classes.test.readable).toBe(1);
    expect(report.unreadable).toEqual([
      { key: 'small.zip:train/dog.2.jpg', reason: expect.stringMatching(/^text, not an image \("<html><body>Not Found/) },
      { key: 'small.zip:train/dog.3.jpg', reason: 'empty file (0 bytes)' },
      { key: 'small.zip:train/dog.5.jpg', reason: expect.stringMatching(/^damaged jpeg header: [^\n]+$/) },
    ]);
    expect(report.formats).toEqual({ jpeg: 6, png: 1 });
    expect(report.skipped.map((s) => s.path)).toEqual(['train/notes.txt']);
    expect(report.oddities).toContainEqual({ key: 'small.zip:train/dog.1.jpg', note: 'a png file named .jpg' });
    expect(report.oddities).toContainEqual({ key: 'small.zip:train/dog.4.jpg', note: 'no JPEG end marker: the file is probably truncated' });
    expect(report.oddities.some((o) => o.key === 'small.zip:train/cat.3.jpg' && /end marker/.test(o.note))).toBe(false);
    expect(report.duplicates).toEqual([['small.zip:train/cat.1.jpg', 'small.zip:train/cat.9.jpg']]);
    expect(report.images).toHaveLength(7);
    expect(progress[0]).toEqual([0, 10]);
    expect(progress.at(-1)).toEqual([10, 10]);

    const files = await writeInspectReport(report, join(dir, 'inspect-out'));
    expect(JSON.parse(await readFile(files.json, 'utf8'))).toEqual(JSON.parse(JSON.stringify(report)) as InspectReport);
    const r = await raster(await readFile(files.png));
    expect([r.width, r.height]).toEqual([CHART_WIDTH, CHART_HEIGHT]);
    expect(find(r, CLASS_COLORS.cat).count).toBeGreaterThan(10);
    expect(find(r, CLASS_COLORS.dog).count).toBeGreaterThan(10);
  });

  it('stops with the abort reason', async () => {
    const before = new AbortController();
    before.abort(new Error('not now'));
    await expect(inspectDataset([zip], { signal: before.signal })).rejects.toThrow('not now');

    const during = new AbortController();
    let last = 0;
    const run = inspectDataset([zip], {
      concurrency: 1,
      signal: during.signal,
      onProgress: (done) => {
        last = done;
        if (done === 2) during.abort(new Error('stop here'));
      },
    });
    await expect(run).rejects.toThrow('stop here');
    expect(last).toBe(2);
  });
});
