/**
 * Contact sheet: a grid of letterboxed thumbnails (the whole photo, never cropped) with one to
 * three caption lines under each, for a person to review outliers or the worst errors. A photo
 * that cannot be decoded gets a grey "unreadable" tile; the sheet itself never fails on one.
 * Vector images (SVG) are never rendered, the same rule as the photo decoder's.
 */
import sharp from 'sharp';
import { sniffImageType } from '../vision/decode.ts';
import { fitText, INK, px, svgDocument, svgText } from './svg.ts';

export interface ContactSheetItem {
  /** The photo's bytes (JPEG, PNG, WebP, GIF, AVIF, TIFF). */
  image: Buffer;
  /** Lines under the thumbnail, e.g. the file name and "p(dog)=0.97 label=cat"; at most 3 are shown. */
  caption: string[];
}

export interface ContactSheetOptions {
  /** Thumbnail width and height in pixels (default 180). */
  thumb?: number;
  /** Thumbnails per row (default 6, fewer when there are fewer photos). */
  columns?: number;
  title?: string;
}

/** Letterbox bars around a thumbnail. */
export const LETTERBOX_FILL = '#eeeeee';
/** The tile of a photo that cannot be decoded. */
export const UNREADABLE_FILL = '#a0a0a0';

const PAD = 12;
const CAPTION_SIZE = 11;
const LINE_HEIGHT = 14;
const TITLE_HEIGHT = 40;
const MAX_CAPTION_LINES = 3;
/** Decodes at a time: bounds memory when a sheet holds a hundred full-size photos. */
const DECODE_CONCURRENCY = 4;
/** Larger photos are not decoded (the decoder's own limit). */
const MAX_PIXELS = 50_000_000;

export interface SheetLayout {
  width: number;
  height: number;
  columns: number;
  rows: number;
  thumb: number;
  captionLines: number;
  /** Top-left corner of the thumbnail of item `i`. */
  tile(i: number): { x: number; y: number };
}

/** Where everything goes on a sheet of `count` items with up to `captionLines` lines each. */
export function sheetLayout(count: number, captionLines: number, opts: ContactSheetOptions = {}): SheetLayout {
  const thumb = Math.max(16, Math.round(opts.thumb ?? 180));
  const columns = Math.max(1, Math.min(Math.round(opts.columns ?? 6), Math.max(1, count)));
  const rows = Math.max(1, Math.ceil(count / columns));
  const lines = Math.min(MAX_CAPTION_LINES, Math.max(0, captionLines));
  const top = opts.title ? TITLE_HEIGHT : 0;
  const cellHeight = thumb + (lines ? 4 + lines * LINE_HEIGHT : 0);
  return {
    width: PAD + columns * (thumb + PAD),
    height: top + PAD + rows * (cellHeight + PAD),
    columns,
    rows,
    thumb,
    captionLines: lines,
    tile: (i) => ({ x: PAD + (i % columns) * (thumb + PAD), y: top + PAD + Math.floor(i / columns) * (cellHeight + PAD) }),
  };
}

/** The photo scaled to fit a `size` square, upright (EXIF), on the letterbox colour; null when it cannot be decoded. */
async function thumbnail(image: Buffer, size: number): Promise<Buffer | null> {
  const type = image.length ? sniffImageType(image) : null;
  if (type === null || type === 'bmp') return null;
  try {
    return await sharp(image, { failOn: 'error', limitInputPixels: MAX_PIXELS, pages: 1 })
      .timeout({ seconds: 20 })
      .rotate()
      .resize(size, size, { fit: 'contain', background: LETTERBOX_FILL })
      .flatten({ background: LETTERBOX_FILL })
      .png()
      .toBuffer();
  } catch {
    return null;
  }
}

async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** The sheet as a PNG; its size is `sheetLayout(items.length, longest caption, opts)`. */
export async function contactSheetPng(items: ContactSheetItem[], opts: ContactSheetOptions = {}): Promise<Buffer> {
  const layout = sheetLayout(items.length, Math.max(0, ...items.map((it) => it.caption.length)), opts);
  const { thumb } = layout;
  const thumbs = await mapLimited(items, DECODE_CONCURRENCY, (it) => thumbnail(it.image, thumb));
  const parts: string[] = [];
  if (opts.title) parts.push(svgText(PAD, 27, fitText(opts.title, layout.width - 2 * PAD, 16), { size: 16, weight: 'bold' }));
  if (!items.length) parts.push(svgText(layout.width / 2, layout.tile(0).y + thumb / 2, 'no photos', { size: 13, anchor: 'middle' }));
  items.forEach((it, i) => {
    const { x, y } = layout.tile(i);
    if (!thumbs[i]) {
      parts.push(`<rect x="${px(x)}" y="${px(y)}" width="${thumb}" height="${thumb}" fill="${UNREADABLE_FILL}"/>`);
      parts.push(svgText(x + thumb / 2, y + thumb / 2 + 5, 'unreadable', { size: 14, anchor: 'middle', fill: '#ffffff', weight: 'bold' }));
    }
    it.caption.slice(0, MAX_CAPTION_LINES).forEach((line, k) => {
      parts.push(svgText(x, y + thumb + 4 + (k + 1) * LINE_HEIGHT - 3, fitText(line, thumb, CAPTION_SIZE), { size: CAPTION_SIZE, fill: INK }));
    });
  });
  const layers = thumbs.flatMap((png, i) => (png ? [{ input: png, left: layout.tile(i).x, top: layout.tile(i).y }] : []));
  const base = Buffer.from(svgDocument(layout.width, layout.height, parts.join('')));
  return sharp(base).composite(layers).png().toBuffer();
}
