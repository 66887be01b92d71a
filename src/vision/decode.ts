/**
 * The image input stage: untrusted bytes in, 8-bit sRGB RGB pixels out (or a typed error).
 *
 * Order of checks, cheapest first, so that a hostile or mistaken upload costs as little as possible:
 *   1. zero bytes                       -> UnsupportedImage
 *   2. byte limit                       -> ImageTooLarge
 *   3. type sniffed from magic bytes    -> UnsupportedImage (text, HTML, JSON, PDF, unknown...)
 *      (never from a file name or a Content-Type)   VectorImageRefused (SVG: never rendered)
 *   4. header only (sharp metadata)     -> ImageDimensionsTooLarge, before any pixel is decoded
 *   5. decode (sharp, with limitInputPixels as a second fence, failOn and a timeout)
 *      -> UnsupportedImage for truncated/corrupt data, original error kept as `cause`.
 */
import sharp from 'sharp';
import { ImageDimensionsTooLarge, ImageTooLarge, UnsupportedImage, VectorImageRefused } from '../errors.ts';

export interface ImageLimits {
  /** Largest accepted file, in bytes. */
  maxBytes: number;
  /** Largest accepted width x height (of the first frame), read from the header before decoding. */
  maxPixels: number;
}

/** 25 MB and 50 megapixels: above any phone photo, far below what would hurt the process. */
export const DEFAULT_LIMITS: Readonly<ImageLimits> = Object.freeze({
  maxBytes: 25 * 1024 * 1024,
  maxPixels: 50_000_000,
});

/** Decoded pixels: 8-bit sRGB, exactly 3 channels (R, G, B), row-major, `width * height * 3` bytes. */
export interface DecodedImage {
  data: Buffer;
  width: number;
  height: number;
  /** The container format sniffed from the bytes, e.g. 'jpeg', 'png', 'avif'. */
  format: string;
}

export type SniffedImageType = 'jpeg' | 'png' | 'gif' | 'webp' | 'avif' | 'heif' | 'tiff' | 'bmp';

/** Seconds after which sharp abandons a decode (a safety net: the limits above should keep it far from this). */
const DECODE_TIMEOUT_S = 30;

/** What sharp is told to refuse: 'error' aborts on truncated or corrupt pixel data but tolerates
 * libpng/libjpeg *warnings* (e.g. the very common "iCCP: known incorrect sRGB profile"), which
 * would otherwise refuse perfectly viewable photos. */
const FAIL_ON = 'error' as const;

const ACCEPTED = 'Please send a JPEG, PNG, WebP, GIF or AVIF photo.';
const CORRUPT = 'The image data is truncated or corrupt.';

function ascii(bytes: Uint8Array, start: number, length: number): string {
  let s = '';
  const end = Math.min(bytes.length, start + length);
  for (let i = start; i < end; i++) s += String.fromCharCode(bytes[i]!);
  return s;
}

function startsWith(bytes: Uint8Array, sig: readonly number[], at = 0): boolean {
  if (bytes.length < at + sig.length) return false;
  for (let i = 0; i < sig.length; i++) if (bytes[at + i] !== sig[i]) return false;
  return true;
}

function u32be(bytes: Uint8Array, at: number): number {
  return ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0;
}

function u32le(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;
}

const AVIF_BRANDS = new Set(['avif', 'avis']);
const HEIF_BRANDS = new Set(['heic', 'heix', 'heim', 'heis', 'hevc', 'hevx', 'hevm', 'hevs', 'mif1', 'msf1']);

/** Brands of an ISO-BMFF `ftyp` box (major first), or null when the bytes do not start with one. */
function ftypBrands(bytes: Uint8Array): string[] | null {
  if (bytes.length < 12 || ascii(bytes, 4, 4) !== 'ftyp') return null;
  const boxSize = u32be(bytes, 0);
  const end = Math.min(bytes.length, boxSize >= 16 ? boxSize : 16, 4096);
  const brands = [ascii(bytes, 8, 4)];
  for (let at = 16; at + 4 <= end; at += 4) brands.push(ascii(bytes, at, 4));
  return brands;
}

/**
 * The image container type, from magic bytes only (never a file name or a Content-Type);
 * null when the bytes are not one of these.
 */
export function sniffImageType(bytes: Uint8Array): SniffedImageType | null {
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return 'jpeg';
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'png';
  const head6 = ascii(bytes, 0, 6);
  if (head6 === 'GIF87a' || head6 === 'GIF89a') return 'gif';
  if (ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 4) === 'WEBP') return 'webp';
  const brands = ftypBrands(bytes);
  if (brands) {
    const [major] = brands;
    if (AVIF_BRANDS.has(major!)) return 'avif';
    if (HEIF_BRANDS.has(major!)) {
      // mif1/msf1 are generic HEIF structure brands; AVIF files often use them as major brand.
      if (brands.some((b) => AVIF_BRANDS.has(b))) return 'avif';
      return 'heif';
    }
    if (brands.some((b) => AVIF_BRANDS.has(b))) return 'avif';
    if (brands.some((b) => HEIF_BRANDS.has(b) && b !== 'mif1' && b !== 'msf1')) return 'heif';
    return null;
  }
  if (
    startsWith(bytes, [0x49, 0x49, 0x2a, 0x00]) || // II*\0  little-endian TIFF
    startsWith(bytes, [0x4d, 0x4d, 0x00, 0x2a]) || // MM\0*  big-endian TIFF
    startsWith(bytes, [0x49, 0x49, 0x2b, 0x00]) || // BigTIFF
    startsWith(bytes, [0x4d, 0x4d, 0x00, 0x2b])
  ) {
    return 'tiff';
  }
  // "BM" alone is too weak (text may start with it): also require a known DIB header size.
  if (bytes.length >= 26 && bytes[0] === 0x42 && bytes[1] === 0x4d) {
    const dib = u32le(bytes, 14);
    if ([12, 16, 40, 52, 56, 64, 108, 124].includes(dib)) return 'bmp';
  }
  return null;
}

/** True when the first bytes look like text (UTF-8 / ASCII): no NUL, hardly any control bytes. */
function looksLikeText(bytes: Uint8Array): boolean {
  const n = Math.min(bytes.length, 4096);
  let control = 0;
  for (let i = 0; i < n; i++) {
    const b = bytes[i]!;
    if (b === 0) return false;
    if (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d && b !== 0x0c && b !== 0x1b) control++;
    else if (b === 0x7f) control++;
  }
  return control <= n * 0.02;
}

/** Why bytes that are not a known image are refused, in words; an SVG is refused with its own class. */
function refuseNonImage(bytes: Uint8Array): UnsupportedImage {
  const head = ascii(bytes, 0, 16);
  if (head.startsWith('%PDF-')) return new UnsupportedImage(`This looks like a PDF document, not an image. ${ACCEPTED}`);
  if (startsWith(bytes, [0x50, 0x4b, 0x03, 0x04])) {
    return new UnsupportedImage(`This looks like a ZIP archive, not an image. ${ACCEPTED}`);
  }
  if (startsWith(bytes, [0x1f, 0x8b])) {
    return new UnsupportedImage(`This looks like a compressed (gzip) file, not an image. ${ACCEPTED}`);
  }
  if (startsWith(bytes, [0xff, 0x0a]) || (ascii(bytes, 4, 4) === 'JXL ' && u32be(bytes, 0) === 12)) {
    return new UnsupportedImage(`This is a JPEG XL image, which is not supported. ${ACCEPTED}`);
  }
  if (ftypBrands(bytes) || (head.startsWith('RIFF') && ascii(bytes, 8, 4) === 'AVI ')) {
    return new UnsupportedImage(`This looks like a video, not an image. ${ACCEPTED}`);
  }
  if (head.startsWith('RIFF') && ascii(bytes, 8, 4) === 'WAVE') {
    return new UnsupportedImage(`This looks like an audio file, not an image. ${ACCEPTED}`);
  }
  if (looksLikeText(bytes)) {
    // Up to 64 KB: an SVG may carry a long comment or metadata before its <svg> element.
    let text = new TextDecoder('utf-8', { fatal: false }).decode(bytes.subarray(0, 65536));
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    const lower = text.trimStart().toLowerCase();
    if (/^<(!doctype\s+html|html[\s>]|head[\s>]|body[\s>])/.test(lower)) {
      return new UnsupportedImage(`This looks like a web page (HTML), not an image. ${ACCEPTED}`);
    }
    if (lower.startsWith('<') && /<svg[\s>/]/.test(lower)) return new VectorImageRefused();
    if (lower.startsWith('<?xml')) return new UnsupportedImage(`This looks like an XML document, not an image. ${ACCEPTED}`);
    if (lower.startsWith('<') && /<html[\s>]/.test(lower.slice(0, 4096))) {
      return new UnsupportedImage(`This looks like a web page (HTML), not an image. ${ACCEPTED}`);
    }
    if (lower.startsWith('{') || lower.startsWith('[')) {
      return new UnsupportedImage(`This looks like JSON text, not an image. ${ACCEPTED}`);
    }
    if (lower.startsWith('data:image/')) {
      return new UnsupportedImage(`This is text (a data: URL), not the image file itself. ${ACCEPTED}`);
    }
    return new UnsupportedImage(`This looks like text, not an image. ${ACCEPTED}`);
  }
  return new UnsupportedImage(`This file is not an image format we can read. ${ACCEPTED}`);
}

function validLimits(limits?: Partial<ImageLimits>): ImageLimits {
  const merged: ImageLimits = { ...DEFAULT_LIMITS, ...limits };
  for (const [k, v] of Object.entries(merged)) {
    if (!Number.isFinite(v) || v < 1) throw new RangeError(`image limit ${k} must be a finite number >= 1, got ${v}`);
  }
  return merged;
}

/** A sharp failure, in words for people; the original error stays as `cause`. */
function wrapSharpError(err: unknown, type: SniffedImageType): UnsupportedImage {
  const msg = err instanceof Error ? err.message : String(err);
  if (/timeout/i.test(msg)) {
    return new UnsupportedImage('The image took too long to decode; it may be corrupt.', { cause: err });
  }
  // sharp's prebuilt libvips reads AVIF but has no HEVC decoder, so HEIC fails here whatever the cause.
  if (type === 'heif') {
    return new UnsupportedImage(
      `HEIC/HEIF photos (the iPhone default) cannot be read here. ${ACCEPTED} ` +
        '(On an iPhone: Settings > Camera > Formats > Most Compatible.)',
      { cause: err },
    );
  }
  return new UnsupportedImage(CORRUPT, { cause: err });
}

/**
 * Pixels one byte of JPEG data can stand for, at most, in anything but a crafted file. Encoders
 * reach about 340 (a flat 7000x7000 picture, mozjpeg, quality 1: 144 KB); this allows 12 times that.
 */
export const MAX_JPEG_PIXELS_PER_BYTE = 4096;

/**
 * A JPEG whose header promises far more pixels than its data could hold (a 270-byte file that
 * says 7000x7000) would be decoded into a full-size buffer of mostly nothing: refused from the
 * header, before any allocation. Small pictures (up to 1 megapixel) are never refused for this.
 */
function checkJpegDensity(type: SniffedImageType, byteLength: number, width: number, height: number): void {
  const pixels = width * height;
  if (type !== 'jpeg' || pixels <= 1_000_000 || pixels <= byteLength * MAX_JPEG_PIXELS_PER_BYTE) return;
  throw new UnsupportedImage(
    `The file is ${byteLength} bytes but says it is ${width}x${height} pixels: far too little data for a photo that size, so it is truncated or damaged. Please send the original photo.`,
  );
}

/**
 * Decodes untrusted image bytes into 8-bit sRGB RGB pixels.
 *
 * - EXIF orientation applied (a phone photo stored sideways comes out upright);
 * - animated GIF/WebP and multi-page TIFF: first frame/page only;
 * - transparency flattened on white; greyscale, CMYK, 16-bit and palette images converted to
 *   8-bit sRGB with exactly 3 channels; embedded ICC profiles converted to sRGB by sharp.
 *
 * Throws UnsupportedImage (or its VectorImageRefused), ImageTooLarge or ImageDimensionsTooLarge;
 * a RangeError only for invalid `limits` (a programming error).
 */
export async function decodeImage(bytes: Uint8Array, limits?: Partial<ImageLimits>): Promise<DecodedImage> {
  const { maxBytes, maxPixels } = validLimits(limits);
  if (bytes.byteLength === 0) throw new UnsupportedImage('The file is empty.');
  if (bytes.byteLength > maxBytes) throw new ImageTooLarge(bytes.byteLength, maxBytes);

  const type = sniffImageType(bytes);
  if (type === null) throw refuseNonImage(bytes);
  if (type === 'bmp') throw new UnsupportedImage(`BMP images are not supported. ${ACCEPTED}`);

  // A view, not a copy: sharp only reads it.
  const input = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const pixelLimit = Math.floor(maxPixels);
  const frame = { pages: 1, page: 0 } as const;

  // Header only: nothing is decoded here, so a 30000x30000 "pixel bomb" costs microseconds.
  let width: number;
  let height: number;
  try {
    const meta = await sharp(input, { ...frame, failOn: FAIL_ON, limitInputPixels: false }).metadata();
    if (!meta.width || !meta.height) throw new Error(`no dimensions in the ${type} header`);
    // Report the size the way the user sees the photo: EXIF orientations 5..8 swap the axes.
    const swap = (meta.orientation ?? 1) >= 5;
    const frameHeight = meta.pageHeight ?? meta.height;
    width = swap ? frameHeight : meta.width;
    height = swap ? meta.width : frameHeight;
  } catch (err) {
    throw wrapSharpError(err, type);
  }
  if (width * height > pixelLimit) throw new ImageDimensionsTooLarge(width, height, pixelLimit);
  checkJpegDensity(type, bytes.byteLength, width, height);

  try {
    const { data, info } = await sharp(input, {
      ...frame,
      failOn: FAIL_ON,
      // Second fence: sharp itself refuses to decode anything larger, whatever the header above said.
      limitInputPixels: pixelLimit,
    })
      .timeout({ seconds: DECODE_TIMEOUT_S })
      .rotate() // no angle: orient from EXIF, then drop the tag
      .flatten({ background: { r: 255, g: 255, b: 255 } })
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 || data.length !== info.width * info.height * 3) {
      throw new Error(`decoder returned ${info.channels} channels, ${data.length} bytes for ${info.width}x${info.height}`);
    }
    return { data, width: info.width, height: info.height, format: type };
  } catch (err) {
    if (err instanceof Error && /pixel limit/i.test(err.message)) {
      throw new ImageDimensionsTooLarge(width, height, pixelLimit);
    }
    throw wrapSharpError(err, type);
  }
}
