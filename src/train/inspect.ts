/**
 * `catdog data inspect`: what is in a dataset before any training. Photos per class, width and
 * height statistics per class read from the headers only (sharp metadata, no pixel decoding),
 * files that cannot be read and why, names that are not Kaggle's, and oddities worth a look
 * (not really a JPEG, EXIF-rotated, missing end marker, tiny, byte-identical duplicates).
 * The report is written as inspect.json plus sizes.png, a width-vs-height scatter plot.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import sharp, { type Metadata } from 'sharp';
import { scatterPlotPng } from '../report/scatter.ts';
import { sniffImageType } from '../vision/decode.ts';
import { contentHash, openDataset, type Dataset, type Label, type Sample, type SkippedEntry } from './dataset.ts';

export interface SizeStats {
  min: number;
  median: number;
  mean: number;
  max: number;
}

export interface ClassSummary {
  /** Photos of this class found in the sources, readable or not. */
  photos: number;
  /** Of those, how many have a readable header (the statistics are over these). */
  readable: number;
  width: SizeStats | null;
  height: SizeStats | null;
}

export type ClassName = 'cat' | 'dog' | 'test';

/** One readable photo: its size as shown (EXIF orientation applied), bytes and container format. */
export interface InspectedImage {
  key: string;
  label: Label | null;
  width: number;
  height: number;
  bytes: number;
  format: string;
}

export interface UnreadableFile {
  key: string;
  reason: string;
}

export interface Oddity {
  key: string;
  note: string;
}

export interface InspectReport {
  sources: string[];
  /** Photos found (readable or not). */
  photos: number;
  /** Photos per class: cats, dogs, and unlabelled test photos. */
  counts: Record<ClassName, number>;
  classes: Record<ClassName, ClassSummary>;
  /** Container formats of the readable photos, e.g. { jpeg: 2002 }. */
  formats: Record<string, number>;
  totalBytes: number;
  unreadable: UnreadableFile[];
  /** Files in the sources that are not Kaggle photo names. */
  skipped: SkippedEntry[];
  oddities: Oddity[];
  /** Groups of keys whose bytes are identical. */
  duplicates: string[][];
  seconds: number;
  /** Every readable photo, for the plot (left out of the printed summary). */
  images: InspectedImage[];
}

export interface InspectOptions {
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  /** Photos read at a time (default 8). */
  concurrency?: number;
}

/** Colours of the classes in the report plots. */
export const CLASS_COLORS: Record<ClassName, string> = { cat: '#e8710a', dog: '#1a73e8', test: '#7f7f7f' };

/** A side shorter than this is noted as an oddity. */
const TINY_SIDE = 64;

function classOf(label: Label | null): ClassName {
  return label === 1 ? 'dog' : label === 0 ? 'cat' : 'test';
}

export function sizeStats(values: number[]): SizeStats | null {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  const mean = sorted.reduce((s, v) => s + v, 0) / sorted.length;
  return { min: sorted[0]!, median, mean: Math.round(mean * 10) / 10, max: sorted[sorted.length - 1]! };
}

/** Why bytes that are no image format are refused, naming what they look like. */
function describeNonImage(bytes: Buffer): string {
  const head = bytes.subarray(0, 64);
  const printable = head.every((b) => b === 9 || b === 10 || b === 13 || (b >= 32 && b < 127));
  if (printable) return `text, not an image ("${head.toString('latin1').replace(/\s+/g, ' ').trim().slice(0, 32)}")`;
  return `not an image format (first bytes ${bytes.subarray(0, 8).toString('hex').replace(/(..)/g, '$1 ').trim()})`;
}

type Outcome = { image: InspectedImage; hash: string; notes: string[] } | { reason: string };

async function inspectPhoto(sample: Sample): Promise<Outcome> {
  let bytes: Buffer;
  try {
    bytes = await sample.read();
  } catch (err) {
    return { reason: err instanceof Error ? err.message : String(err) };
  }
  if (!bytes.length) return { reason: 'empty file (0 bytes)' };
  const type = sniffImageType(bytes);
  if (type === null) return { reason: describeNonImage(bytes) };
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { failOn: 'error', limitInputPixels: false, pages: 1 }).metadata();
  } catch (err) {
    // libvips repeats its warnings line by line: keep each distinct line once.
    const lines = [...new Set(String(err instanceof Error ? err.message : err).split('\n').map((l) => l.trim()).filter(Boolean))];
    return { reason: `damaged ${type} header: ${lines.join('; ')}` };
  }
  if (!meta.width || !meta.height) return { reason: `no dimensions in the ${type} header` };
  const orientation = meta.orientation ?? 1;
  const upright = orientation >= 5; // EXIF 5..8 swap the axes when shown
  const width = upright ? meta.height : meta.width;
  const height = upright ? meta.width : meta.height;
  const notes: string[] = [];
  if (type !== 'jpeg' && /\.jpe?g$/i.test(sample.name)) notes.push(`a ${type} file named .jpg`);
  if (orientation !== 1) notes.push(`EXIF orientation ${orientation}: shown rotated (sizes are given as shown)`);
  // 0xFFD9 cannot occur inside JPEG entropy-coded data, so its absence near the end means a cut-off file.
  if (type === 'jpeg' && bytes.subarray(Math.max(0, bytes.length - 4096)).lastIndexOf(Buffer.from([0xff, 0xd9])) < 0) {
    notes.push('no JPEG end marker: the file is probably truncated');
  }
  if (Math.min(width, height) < TINY_SIDE) notes.push(`tiny: ${width}x${height}`);
  return {
    image: { key: sample.key, label: sample.label, width, height, bytes: bytes.length, format: type },
    hash: contentHash(bytes),
    notes,
  };
}

/** Rejects with the signal's reason as soon as it is aborted, whatever `work` is doing. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  return Promise.race([work, aborted]).finally(() => signal.removeEventListener('abort', onAbort));
}

/**
 * Inspects every photo of the sources (zips or folders, see openDataset), `concurrency` at a
 * time. An unreadable photo is listed with its reason, never fatal. Aborting `signal` rejects
 * promptly with its reason.
 */
export async function inspectDataset(sources: string[], opts: InspectOptions = {}): Promise<InspectReport> {
  const { signal } = opts;
  signal?.throwIfAborted();
  const started = performance.now();
  const opening = openDataset(sources);
  let ds: Dataset;
  try {
    ds = await untilAborted(opening, signal);
  } catch (err) {
    opening.then((late) => late.close(), () => {}); // aborted while opening: close it once it is open
    throw err;
  }
  try {
    const samples = ds.samples;
    const outcomes = new Array<Outcome>(samples.length);
    let next = 0;
    let done = 0;
    opts.onProgress?.(0, samples.length);
    const worker = async () => {
      while (next < samples.length) {
        signal?.throwIfAborted();
        const i = next++;
        outcomes[i] = await inspectPhoto(samples[i]!);
        done++;
        opts.onProgress?.(done, samples.length);
      }
    };
    const workers = Math.max(1, Math.min(Math.floor(opts.concurrency ?? 8), samples.length));
    await untilAborted(Promise.all(Array.from({ length: workers }, worker)), signal);

    const counts: Record<ClassName, number> = { cat: 0, dog: 0, test: 0 };
    const images: InspectedImage[] = [];
    const unreadable: UnreadableFile[] = [];
    const oddities: Oddity[] = [];
    const formats: Record<string, number> = {};
    const byHash = new Map<string, string[]>();
    let totalBytes = 0;
    samples.forEach((sample, i) => {
      counts[classOf(sample.label)]++;
      const o = outcomes[i]!;
      if ('reason' in o) {
        unreadable.push({ key: sample.key, reason: o.reason });
        return;
      }
      images.push(o.image);
      formats[o.image.format] = (formats[o.image.format] ?? 0) + 1;
      totalBytes += o.image.bytes;
      for (const note of o.notes) oddities.push({ key: sample.key, note });
      const same = byHash.get(o.hash);
      if (same) same.push(sample.key);
      else byHash.set(o.hash, [sample.key]);
    });
    const summary = (c: ClassName): ClassSummary => {
      const mine = images.filter((im) => classOf(im.label) === c);
      return { photos: counts[c], readable: mine.length, width: sizeStats(mine.map((im) => im.width)), height: sizeStats(mine.map((im) => im.height)) };
    };
    return {
      sources: ds.sources,
      photos: samples.length,
      counts,
      classes: { cat: summary('cat'), dog: summary('dog'), test: summary('test') },
      formats,
      totalBytes,
      unreadable,
      skipped: ds.skipped,
      oddities,
      duplicates: [...byHash.values()].filter((keys) => keys.length > 1),
      seconds: Math.round((performance.now() - started) / 10) / 100,
      images,
    };
  } finally {
    await ds.close();
  }
}

/** Width against height of every readable photo, one colour per class. */
export async function sizesPlotPng(report: InspectReport): Promise<Buffer> {
  const names = report.sources.map((s) => basename(s)).join(' + ');
  const classes: ClassName[] = ['cat', 'dog', 'test'];
  return scatterPlotPng({
    title: `Photo sizes in ${names} (${report.images.length} photos)`,
    xLabel: 'width (pixels)',
    yLabel: 'height (pixels)',
    zero: true,
    series: classes
      .filter((c) => report.classes[c].readable > 0)
      .map((c) => ({
        name: `${c === 'test' ? 'test (unlabelled)' : `${c}s`} (${report.classes[c].readable})`,
        color: CLASS_COLORS[c],
        points: report.images.filter((im) => classOf(im.label) === c).map((im) => [im.width, im.height] as [number, number]),
      })),
  });
}

/** Writes `inspect.json` (the whole report, one photo per line) and `sizes.png` into `outDir`. */
export async function writeInspectReport(report: InspectReport, outDir: string): Promise<{ json: string; png: string }> {
  await mkdir(outDir, { recursive: true });
  const json = join(outDir, 'inspect.json');
  const png = join(outDir, 'sizes.png');
  const { images, ...rest } = report;
  const head = JSON.stringify(rest, null, 2).replace(/\n}$/, '');
  const lines = images.map((im) => `    ${JSON.stringify(im)}`).join(',\n');
  await writeFile(json, `${head},\n  "images": [${images.length ? `\n${lines}\n  ` : ''}]\n}\n`);
  await writeFile(png, await sizesPlotPng(report));
  return { json, png };
}
