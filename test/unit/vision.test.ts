/**
 * The image input stage: decoding untrusted bytes (src/vision/decode.ts) and turning pixels into
 * backbone tensors (src/vision/preprocess.ts). Every image is generated here with sharp; the
 * optional last block reads a few real photos from ../shared when they are there.
 */
import { deflateSync, crc32 } from 'node:zlib';
import sharp, { type Sharp } from 'sharp';
import yauzl from 'yauzl';
import { describe, expect, it } from 'vitest';
import {
  CatdogError,
  ImageDimensionsTooLarge,
  ImageTooLarge,
  UnsupportedImage,
  VectorImageRefused,
} from '../../src/errors.ts';
import { DEFAULT_LIMITS, decodeImage, sniffImageType, type DecodedImage } from '../../src/vision/decode.ts';
import {
  RESIZE_KERNEL,
  flipHorizontalRGB,
  preprocess,
  resizeRGB,
  toTensorNCHW,
  toTensorNHWC,
} from '../../src/vision/preprocess.ts';
import { requireShared } from '../helpers/shared.ts';

// ---------------------------------------------------------------- helpers

type RGB = readonly [number, number, number];

/** Raw RGB(A) pixels from a per-pixel function. */
function pixels(w: number, h: number, channels: 3 | 4, f: (x: number, y: number) => readonly number[]): Buffer {
  const buf = Buffer.alloc(w * h * channels);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const v = f(x, y);
      for (let c = 0; c < channels; c++) buf[(y * w + x) * channels + c] = v[c]!;
    }
  }
  return buf;
}

function fromRaw(w: number, h: number, channels: 3 | 4, f: (x: number, y: number) => readonly number[]): Sharp {
  return sharp(pixels(w, h, channels, f), { raw: { width: w, height: h, channels } });
}

const solid =
  (c: readonly number[]) =>
  (): readonly number[] =>
    c;

/** Deterministic noise, so JPEGs have real scan data to cut in half. */
function noisy(w: number, h: number): Sharp {
  let s = 12345;
  const next = () => ((s = (s * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
  return fromRaw(w, h, 3, () => [next(), next(), next()]);
}

function pixelAt(img: DecodedImage, x: number, y: number): RGB {
  const i = (y * img.width + x) * 3;
  return [img.data[i]!, img.data[i + 1]!, img.data[i + 2]!];
}

function expectColour(actual: RGB, expected: RGB, tolerance: number): void {
  for (let c = 0; c < 3; c++) {
    expect(Math.abs(actual[c]! - expected[c]!), `channel ${c}: ${actual} vs ${expected}`).toBeLessThanOrEqual(tolerance);
  }
}

function expectRGB8(img: DecodedImage, width: number, height: number): void {
  expect(img.width).toBe(width);
  expect(img.height).toBe(height);
  expect(Buffer.isBuffer(img.data)).toBe(true);
  expect(img.data.length).toBe(width * height * 3);
}

/** A message a person can read: a sentence, no library names, no stack. */
function expectHuman(message: string): void {
  expect(message).toMatch(/^[A-Z]/);
  expect(message).toMatch(/[.)]$/);
  expect(message.length).toBeLessThan(300);
  expect(message).not.toMatch(/vips|sharp|libpng|libjpeg|\bat \w+ \(|Error:|undefined|NaN/i);
}

async function refusal(promise: Promise<unknown>): Promise<CatdogError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(CatdogError);
    return err as CatdogError;
  }
  throw new Error('expected decodeImage to refuse the input');
}

async function expectUnsupported(bytes: Uint8Array, pattern: RegExp): Promise<UnsupportedImage> {
  const err = await refusal(decodeImage(bytes));
  expect(err).toBeInstanceOf(UnsupportedImage);
  expect(err.code).toBe('unsupported_image');
  expect(err.message).toMatch(pattern);
  expectHuman(err.message);
  return err as UnsupportedImage;
}

/** A PNG file from chunks, with correct CRCs. */
function pngChunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** A valid PNG header claiming width x height RGB8, with a tiny IDAT (one compressed row): no big allocation. */
function craftedPng(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(Buffer.alloc(1 + 3 * 64))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A two-frame animation: red then blue, each w x h. */
function twoFrames(w: number, h: number): Sharp {
  const frames = Buffer.concat([pixels(w, h, 3, solid([255, 0, 0])), pixels(w, h, 3, solid([0, 0, 255]))]);
  return sharp(frames, { raw: { width: w, height: h * 2, channels: 3, pageHeight: h } });
}

// ---------------------------------------------------------------- sniffing

describe('sniffImageType', () => {
  const cases: [string, number[] | string, ReturnType<typeof sniffImageType>][] = [
    ['jpeg', [0xff, 0xd8, 0xff, 0xe0, 0, 0x10], 'jpeg'],
    ['png', [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0], 'png'],
    ['gif87', 'GIF87a....', 'gif'],
    ['gif89', 'GIF89a....', 'gif'],
    ['webp', 'RIFF\x10\x00\x00\x00WEBPVP8 ', 'webp'],
    ['riff wave is not webp', 'RIFF\x10\x00\x00\x00WAVEfmt ', null],
    ['avif', '\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf', 'avif'],
    ['avif under mif1', '\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1avif', 'avif'],
    ['heic', '\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic', 'heif'],
    ['mp4 is not an image', '\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2', null],
    ['tiff le', [0x49, 0x49, 0x2a, 0x00, 8, 0, 0, 0], 'tiff'],
    ['tiff be', [0x4d, 0x4d, 0x00, 0x2a, 0, 0, 0, 8], 'tiff'],
    ['bmp', [0x42, 0x4d, 0x46, 0, 0, 0, 0, 0, 0, 0, 0x36, 0, 0, 0, 40, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0], 'bmp'],
    ['text starting with BM', 'BMW makes cars, not images of cats.', null],
    ['html', '<!doctype html><html></html>', null],
    ['empty', [], null],
    ['one byte', [0xff], null],
  ];
  it.each(cases)('%s', (_name, bytes, expected) => {
    const buf = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : Uint8Array.from(bytes);
    expect(sniffImageType(buf)).toBe(expected);
  });
});

// ---------------------------------------------------------------- decoding

describe('decodeImage: formats', () => {
  const colour: RGB = [200, 100, 50];
  const formats: [string, (s: Sharp) => Sharp, number][] = [
    ['jpeg', (s) => s.jpeg({ quality: 95 }), 6],
    ['png', (s) => s.png(), 0],
    ['webp', (s) => s.webp({ lossless: true }), 0],
    ['gif', (s) => s.gif(), 4],
    ['tiff', (s) => s.tiff(), 0],
    ['avif', (s) => s.avif({ lossless: true, effort: 0 }), 4],
  ];
  it.each(formats)('%s decodes to 8-bit RGB with the right size and colour', async (format, encode, tol) => {
    const bytes = await encode(fromRaw(37, 23, 3, solid(colour))).toBuffer();
    expect(sniffImageType(bytes)).toBe(format);
    const img = await decodeImage(bytes);
    expectRGB8(img, 37, 23);
    expect(img.format).toBe(format);
    expectColour(pixelAt(img, 0, 0), colour, tol);
    expectColour(pixelAt(img, 36, 22), colour, tol);
  });

  it('accepts a Uint8Array view into a larger buffer (not only a Buffer)', async () => {
    const png = await fromRaw(5, 4, 3, solid([1, 2, 3])).png().toBuffer();
    const backing = new Uint8Array(png.length + 20);
    backing.set(png, 10);
    const img = await decodeImage(backing.subarray(10, 10 + png.length));
    expectRGB8(img, 5, 4);
    expect(pixelAt(img, 4, 3)).toEqual([1, 2, 3]);
  });

  it('applies EXIF orientation 6: a 40x20 stored image comes out 20x40, rotated clockwise', async () => {
    // Stored: left half red, right half blue. Orientation 6 = display rotated 90 degrees clockwise,
    // so the stored left edge (red) ends up on top.
    const stored = fromRaw(40, 20, 3, (x) => (x < 20 ? [255, 0, 0] : [0, 0, 255]));
    const bytes = await stored.jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer();
    expect((await sharp(bytes).metadata()).orientation).toBe(6);
    const img = await decodeImage(bytes);
    expectRGB8(img, 20, 40);
    expectColour(pixelAt(img, 10, 3), [255, 0, 0], 40);
    expectColour(pixelAt(img, 10, 36), [0, 0, 255], 40);
  });

  it('flattens alpha on white: a fully transparent pixel becomes 255,255,255', async () => {
    const bytes = await fromRaw(4, 1, 4, (x) =>
      [[10, 20, 30, 0], [10, 20, 30, 255], [0, 0, 0, 128], [0, 200, 0, 255]][x]!,
    )
      .png()
      .toBuffer();
    expect((await sharp(bytes).metadata()).channels).toBe(4);
    const img = await decodeImage(bytes);
    expectRGB8(img, 4, 1);
    expect(pixelAt(img, 0, 0)).toEqual([255, 255, 255]);
    expect(pixelAt(img, 1, 0)).toEqual([10, 20, 30]);
    expectColour(pixelAt(img, 2, 0), [127, 127, 127], 2); // half-transparent black on white
    expect(pixelAt(img, 3, 0)).toEqual([0, 200, 0]);
  });

  it('greyscale (with and without alpha) becomes 3 equal channels', async () => {
    const grey = await fromRaw(6, 5, 3, solid([90, 90, 90])).toColourspace('b-w').png().toBuffer();
    expect((await sharp(grey).metadata()).channels).toBe(1);
    const img = await decodeImage(grey);
    expectRGB8(img, 6, 5);
    expect(pixelAt(img, 3, 2)).toEqual([90, 90, 90]);

    const greyAlpha = await fromRaw(2, 1, 4, (x) => (x === 0 ? [90, 90, 90, 255] : [0, 0, 0, 0]))
      .toColourspace('b-w')
      .png()
      .toBuffer();
    expect((await sharp(greyAlpha).metadata()).channels).toBe(2);
    const img2 = await decodeImage(greyAlpha);
    expectRGB8(img2, 2, 1);
    expect(pixelAt(img2, 0, 0)).toEqual([90, 90, 90]);
    expect(pixelAt(img2, 1, 0)).toEqual([255, 255, 255]);
  });

  it('CMYK JPEG becomes 8-bit sRGB', async () => {
    const bytes = await fromRaw(16, 8, 3, solid([220, 30, 30])).toColourspace('cmyk').jpeg().toBuffer();
    const meta = await sharp(bytes).metadata();
    expect(meta.space).toBe('cmyk');
    expect(meta.channels).toBe(4);
    const img = await decodeImage(bytes);
    expectRGB8(img, 16, 8);
    const [r, g, b] = pixelAt(img, 8, 4);
    // Through a CMYK profile round trip the colour moves a little, but stays a clear red.
    expect(r).toBeGreaterThan(150);
    expect(g).toBeLessThan(90);
    expect(b).toBeLessThan(90);
  });

  it('16-bit PNG (with alpha too) becomes 8-bit RGB', async () => {
    const bytes = await fromRaw(7, 3, 3, solid([200, 100, 50])).toColourspace('rgb16').png().toBuffer();
    expect((await sharp(bytes).metadata()).depth).toBe('ushort');
    const img = await decodeImage(bytes);
    expectRGB8(img, 7, 3);
    expectColour(pixelAt(img, 6, 2), [200, 100, 50], 1);

    const withAlpha = await fromRaw(2, 1, 4, (x) => (x === 0 ? [200, 100, 50, 255] : [0, 0, 0, 0]))
      .toColourspace('rgb16')
      .png()
      .toBuffer();
    expect((await sharp(withAlpha).metadata()).depth).toBe('ushort');
    const img2 = await decodeImage(withAlpha);
    expectRGB8(img2, 2, 1);
    expectColour(pixelAt(img2, 0, 0), [200, 100, 50], 1);
    expectColour(pixelAt(img2, 1, 0), [255, 255, 255], 1);
  });

  it('palette PNG becomes RGB', async () => {
    const bytes = await fromRaw(8, 8, 3, (x) => (x < 4 ? [255, 0, 0] : [0, 0, 255]))
      .png({ palette: true, colours: 4 })
      .toBuffer();
    expect((await sharp(bytes).metadata()).isPalette).toBe(true);
    const img = await decodeImage(bytes);
    expectRGB8(img, 8, 8);
    expectColour(pixelAt(img, 0, 0), [255, 0, 0], 4);
    expectColour(pixelAt(img, 7, 7), [0, 0, 255], 4);
  });

  it.each([
    ['gif', (s: Sharp) => s.gif({ loop: 0, delay: [100, 100] })],
    ['webp', (s: Sharp) => s.webp({ loop: 0, delay: [100, 100], lossless: true })],
  ] as const)('animated %s: first frame only', async (_name, encode) => {
    const bytes = await encode(twoFrames(10, 8)).toBuffer();
    expect((await sharp(bytes).metadata()).pages).toBe(2);
    const img = await decodeImage(bytes);
    expectRGB8(img, 10, 8); // one frame high, not two
    for (const [x, y] of [[0, 0], [9, 7], [5, 4]] as const) expectColour(pixelAt(img, x, y), [255, 0, 0], 4);
  });
});

describe('decodeImage: refusals', () => {
  it('zero bytes', async () => {
    const err = await expectUnsupported(new Uint8Array(0), /^The file is empty\.$/);
    expect(err).not.toBeInstanceOf(VectorImageRefused);
  });

  it('a truncated JPEG (a real JPEG cut in half) is refused, not a crash or a hang', async () => {
    const jpeg = await noisy(200, 150).jpeg({ quality: 90 }).toBuffer();
    const cut = jpeg.subarray(0, jpeg.length >> 1);
    expect(sniffImageType(cut)).toBe('jpeg');
    const started = performance.now();
    const err = await expectUnsupported(cut, /^The image data is truncated or corrupt\.$/);
    expect(performance.now() - started).toBeLessThan(5000);
    expect(err.cause).toBeInstanceOf(Error); // sharp's own error is kept for logs
  });

  it('a tiny JPEG whose header says 7000x7000 is refused from the header (no 140 MB decode), a real flat one is not', async () => {
    const small = await sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 90, g: 60, b: 30 } } }).jpeg().toBuffer();
    const bomb = Buffer.from(small);
    // The frame header (SOF0 or SOF2): FF C0/C2, length, precision, height, width.
    let sof = -1;
    for (let k = 2; k < bomb.length - 9; k++) if (bomb[k] === 0xff && (bomb[k + 1] === 0xc0 || bomb[k + 1] === 0xc2)) { sof = k; break; }
    expect(sof).toBeGreaterThan(0);
    bomb.writeUInt16BE(7000, sof + 5);
    bomb.writeUInt16BE(7000, sof + 7);
    expect((await sharp(bomb).metadata()).width).toBe(7000);
    const err = await expectUnsupported(bomb, /^The file is \d+ bytes but says it is 7000x7000 pixels: far too little data for a photo that size/);
    expect(err.cause).toBeUndefined(); // refused before sharp decoded anything
    // A genuinely flat 3000x3000 photo (about 170 pixels per byte) still decodes.
    const flat = await sharp({ create: { width: 3000, height: 3000, channels: 3, background: { r: 0, g: 0, b: 0 } } }).jpeg({ mozjpeg: true, quality: 1 }).toBuffer();
    expect((await decodeImage(flat)).width).toBe(3000);
  });

  it('a PNG with corrupt pixel data is refused', async () => {
    const png = await noisy(64, 64).png({ compressionLevel: 0 }).toBuffer();
    const bad = Buffer.from(png);
    // Scribble over the middle of the IDAT payload (its CRC no longer matches).
    for (let i = bad.length >> 2; i < (bad.length * 3) >> 2; i += 7) bad[i] = bad[i]! ^ 0xa5;
    await expectUnsupported(bad, /truncated or corrupt/);
  });

  it('a file that only starts like a JPEG', async () => {
    await expectUnsupported(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4, 5]), /truncated or corrupt/);
  });

  it('plain text', async () => {
    await expectUnsupported(Buffer.from('Hello, here is my cat!\nIt is very fluffy.\n'), /looks like text, not an image/);
  });

  it('HTML (e.g. an error page saved instead of the photo)', async () => {
    await expectUnsupported(
      Buffer.from('\ufeff  <!DOCTYPE html>\n<html><head><title>404</title></head><body>Not found</body></html>'),
      /looks like a web page \(HTML\), not an image/,
    );
    await expectUnsupported(Buffer.from('<html lang="en"><body><svg></svg></body></html>'), /HTML/);
  });

  it('JSON, PDF, ZIP and unknown binary say what they look like', async () => {
    await expectUnsupported(Buffer.from('{"error":"rate limited"}'), /looks like JSON/);
    await expectUnsupported(Buffer.from('%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj', 'latin1'), /looks like a PDF/);
    await expectUnsupported(Buffer.from([0x50, 0x4b, 0x03, 0x04, 20, 0, 0, 0]), /ZIP archive/);
    await expectUnsupported(Buffer.from([0x00, 0x01, 0x02, 0x03, 0xfe, 0x00, 0x99, 0x10]), /not an image format we can read/);
  });

  it('HEIC (no HEVC decoder in sharp) is refused with advice', async () => {
    const heic = Buffer.from('\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic' + '\x00'.repeat(100), 'latin1');
    expect(sniffImageType(heic)).toBe('heif');
    const err = await expectUnsupported(heic, /HEIC/);
    expect(err.cause).toBeInstanceOf(Error);
  });

  it('BMP is refused by name (sharp has no BMP decoder)', async () => {
    const header = Buffer.alloc(54);
    header.write('BM', 0, 'latin1');
    header.writeUInt32LE(54, 2);
    header.writeUInt32LE(40, 14);
    await expectUnsupported(header, /BMP images are not supported/);
  });

  it.each([
    ['bare <svg>', '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'],
    [
      '<?xml ...> then <svg>',
      '<?xml version="1.0" encoding="UTF-8"?>\n<!-- drawn by hand -->\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x">\n<svg viewBox="0 0 1 1"></svg>',
    ],
  ])('SVG is refused explicitly, never rendered: %s', async (_name, text) => {
    const err = await expectUnsupported(Buffer.from(text), /SVG/);
    expect(err).toBeInstanceOf(VectorImageRefused);
    expect(err.cause).toBeUndefined(); // refused before sharp saw it
  });

  it('other XML is refused as XML, not as SVG', async () => {
    const err = await expectUnsupported(Buffer.from('<?xml version="1.0"?><feed><title>cats</title></feed>'), /XML/);
    expect(err).not.toBeInstanceOf(VectorImageRefused);
  });

  it('a 30000x30000 PNG is refused from its header, before decoding', async () => {
    const bomb = craftedPng(30000, 30000);
    expect(bomb.length).toBeLessThan(200);
    expect(sniffImageType(bomb)).toBe('png');
    const started = performance.now();
    const err = await refusal(decodeImage(bomb));
    const ms = performance.now() - started;
    expect(err).toBeInstanceOf(ImageDimensionsTooLarge);
    expect(err.code).toBe('image_dimensions_too_large');
    const dims = err as ImageDimensionsTooLarge;
    expect([dims.width, dims.height, dims.limitPixels]).toEqual([30000, 30000, DEFAULT_LIMITS.maxPixels]);
    expect(err.message).toBe('The image is 30000x30000 pixels, over the limit of 50 megapixels.');
    expectHuman(err.message);
    expect(ms).toBeLessThan(500); // decoding 900 Mpx would take seconds and 2.7 GB
  });

  it('the pixel limit applies to real images and is configurable; the size reported is as displayed', async () => {
    const png = await fromRaw(100, 60, 3, solid([1, 2, 3])).png().toBuffer();
    const err = await refusal(decodeImage(png, { maxPixels: 5999 }));
    expect(err).toBeInstanceOf(ImageDimensionsTooLarge);
    expect(err.message).toMatch(/^The image is 100x60 pixels/);
    expectRGB8(await decodeImage(png, { maxPixels: 6000 }), 100, 60);

    const rotated = await fromRaw(100, 60, 3, solid([1, 2, 3])).jpeg().withMetadata({ orientation: 6 }).toBuffer();
    const err2 = (await refusal(decodeImage(rotated, { maxPixels: 5000 }))) as ImageDimensionsTooLarge;
    expect([err2.width, err2.height]).toEqual([60, 100]);
  });

  it('a 50 MB file is refused by the byte limit before any decoding', async () => {
    const jpeg = await fromRaw(8, 8, 3, solid([0, 0, 0])).jpeg().toBuffer();
    const big = Buffer.alloc(50 * 1024 * 1024, 0xaa);
    jpeg.copy(big);
    const started = performance.now();
    const err = await refusal(decodeImage(big));
    expect(err).toBeInstanceOf(ImageTooLarge);
    expect(err.code).toBe('image_too_large');
    expect((err as ImageTooLarge).bytes).toBe(big.length);
    expect((err as ImageTooLarge).limitBytes).toBe(DEFAULT_LIMITS.maxBytes);
    expect(err.message).toBe('The file is 50.0 MB, over the 25.0 MB limit.');
    expectHuman(err.message);
    expect(performance.now() - started).toBeLessThan(200);

    // The byte check comes before sniffing: even non-images over the limit get the size answer.
    const text = Buffer.from('x'.repeat(2000));
    expect(await refusal(decodeImage(text, { maxBytes: 1000 }))).toBeInstanceOf(ImageTooLarge);
  });

  it('rejects nonsensical limits as a programming error', async () => {
    await expect(decodeImage(Buffer.from('x'), { maxPixels: 0 })).rejects.toThrow(RangeError);
    await expect(decodeImage(Buffer.from('x'), { maxBytes: Number.NaN })).rejects.toThrow(RangeError);
  });
});

// ---------------------------------------------------------------- preprocessing

describe('preprocess', () => {
  const red = Uint8Array.from([255, 0, 0]);

  it('caffe: RGB -> BGR planes minus the ImageNet means, no scaling', () => {
    const t = toTensorNCHW(red, 1, 'caffe');
    expect(t).toHaveLength(3);
    expect(t[0]).toBeCloseTo(-103.939, 4); // B plane
    expect(t[1]).toBeCloseTo(-116.779, 4); // G plane
    expect(t[2]).toBeCloseTo(131.32, 4); // R plane
    // Bit-identical to numpy float32: x[..., c] -= mean.
    expect(t[0]).toBe(Math.fround(0 - Math.fround(103.939)));
    expect(t[2]).toBe(Math.fround(255 - Math.fround(123.68)));
  });

  it('tf: x / 127.5 - 1, channels stay R, G, B', () => {
    const t = toTensorNCHW(Uint8Array.from([0, 255, 128]), 1, 'tf');
    expect(Array.from(t)).toEqual([-1, 1, Math.fround(Math.fround(128 / 127.5) - 1)]);
    expect(t[2]).toBeCloseTo(0.00392, 5);
  });

  it('NCHW planes and NHWC pixels hold the same values (both modes, both sizes)', () => {
    for (const size of [3, 17]) {
      const rgb = new Uint8Array(size * size * 3);
      for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 131 + 7) % 256;
      for (const mode of ['caffe', 'tf'] as const) {
        const nchw = toTensorNCHW(rgb, size, mode);
        const nhwc = toTensorNHWC(rgb, size, mode);
        const n = size * size;
        expect(nchw).toHaveLength(3 * n);
        expect(nhwc).toHaveLength(3 * n);
        for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) expect(nchw[c * n + i]).toBe(nhwc[i * 3 + c]);
      }
      // Keras channels_last caffe: NHWC channel 0 is B.
      expect(toTensorNHWC(red, 1, 'caffe')[0]).toBeCloseTo(-103.939, 4);
    }
  });

  it('toTensorNCHW writes into a batch at an offset and leaves the rest alone', () => {
    const size = 2;
    const per = 3 * size * size;
    const batch = new Float32Array(2 * per).fill(42);
    const rgb = new Uint8Array(size * size * 3).fill(255);
    const out = toTensorNCHW(rgb, size, 'tf', batch, per);
    expect(out).toBe(batch);
    expect(Array.from(batch.subarray(0, per))).toEqual(new Array(per).fill(42));
    expect(Array.from(batch.subarray(per))).toEqual(new Array(per).fill(1));
    expect(() => toTensorNCHW(rgb, size, 'tf', batch, per + 1)).toThrow(RangeError);
    expect(() => toTensorNCHW(rgb, 3, 'tf')).toThrow(RangeError);
  });

  it('flipHorizontalRGB mirrors each row and is its own inverse', () => {
    // 2x2: row 0 = [A, B], row 1 = [C, D]
    const rgb = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    const flipped = flipHorizontalRGB(rgb, 2);
    expect(Array.from(flipped)).toEqual([4, 5, 6, 1, 2, 3, 10, 11, 12, 7, 8, 9]);
    const odd = new Uint8Array(5 * 5 * 3).map((_, i) => i);
    const twice = flipHorizontalRGB(flipHorizontalRGB(odd, 5), 5);
    expect(Buffer.compare(twice, Buffer.from(odd))).toBe(0);
    expect(Array.from(flipHorizontalRGB(odd, 5).subarray(6, 9))).toEqual([6, 7, 8]); // middle column stays
  });

  it('resizeRGB squashes non-square images (no crop), to size x size x 3', async () => {
    // 60x20: thirds red | green | blue. A centre crop would lose red and blue; a squash keeps all three.
    const wide: DecodedImage = {
      data: pixels(60, 20, 3, (x) => (x < 20 ? [255, 0, 0] : x < 40 ? [0, 255, 0] : [0, 0, 255])),
      width: 60,
      height: 20,
      format: 'raw',
    };
    const out = await resizeRGB(wide, 30);
    expect(out).toHaveLength(30 * 30 * 3);
    const at = (x: number, y: number): RGB => [out[(y * 30 + x) * 3]!, out[(y * 30 + x) * 3 + 1]!, out[(y * 30 + x) * 3 + 2]!];
    for (const y of [0, 15, 29]) {
      expectColour(at(2, y), [255, 0, 0], 8);
      expectColour(at(15, y), [0, 255, 0], 8);
      expectColour(at(27, y), [0, 0, 255], 8);
    }
    // Tall image: thirds top to bottom.
    const tall: DecodedImage = {
      data: pixels(10, 45, 3, (_x, y) => (y < 15 ? [255, 0, 0] : y < 30 ? [0, 255, 0] : [0, 0, 255])),
      width: 10,
      height: 45,
      format: 'raw',
    };
    const out2 = await resizeRGB(tall, 9);
    expect(out2).toHaveLength(9 * 9 * 3);
    const at2 = (x: number, y: number): RGB => [out2[(y * 9 + x) * 3]!, out2[(y * 9 + x) * 3 + 1]!, out2[(y * 9 + x) * 3 + 2]!];
    for (const x of [0, 4, 8]) {
      expectColour(at2(x, 0), [255, 0, 0], 8);
      expectColour(at2(x, 4), [0, 255, 0], 8);
      expectColour(at2(x, 8), [0, 0, 255], 8);
    }
  });

  it('resizeRGB antialiases a downscale (no nearest-neighbour aliasing)', async () => {
    // 1-pixel black/white stripes, 200 -> 20: nearest would give pure black or white, an antialiased kernel grey.
    expect(RESIZE_KERNEL).not.toBe('nearest');
    const stripes: DecodedImage = {
      data: pixels(200, 200, 3, (x) => (x % 2 ? [255, 255, 255] : [0, 0, 0])),
      width: 200,
      height: 200,
      format: 'raw',
    };
    const out = await resizeRGB(stripes, 20);
    for (let i = 0; i < out.length; i++) expect(Math.abs(out[i]! - 128)).toBeLessThan(12);
  });

  it('resizeRGB returns a copy at the same size, and refuses inconsistent input', async () => {
    const img: DecodedImage = { data: pixels(4, 4, 3, (x, y) => [x, y, 9]), width: 4, height: 4, format: 'raw' };
    const out = await resizeRGB(img, 4);
    expect(out).not.toBe(img.data);
    expect(Buffer.compare(out, img.data)).toBe(0);
    await expect(resizeRGB({ ...img, width: 5 }, 4)).rejects.toThrow(RangeError);
  });

  it('preprocess = resizeRGB then toTensorNCHW, for both backbone input specs', async () => {
    const img = await decodeImage(await noisy(50, 30).png().toBuffer());
    for (const spec of [
      { size: 224, mode: 'caffe' },
      { size: 299, mode: 'tf' },
    ] as const) {
      const t = await preprocess(img, spec);
      expect(t).toHaveLength(3 * spec.size * spec.size);
      const expected = toTensorNCHW(await resizeRGB(img, spec.size), spec.size, spec.mode);
      expect(Buffer.compare(Buffer.from(t.buffer), Buffer.from(expected.buffer))).toBe(0);
    }
  });
});

// ---------------------------------------------------------------- real photos (optional)

function range(t: Float32Array): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of t) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

/** The first `n` .jpg entries of a zip, as buffers. */
function firstJpegs(zipPath: string, n: number): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    yauzl.open(zipPath, { lazyEntries: true }, (err, zip) => {
      if (err) return reject(err);
      const found: Buffer[] = [];
      zip.on('error', reject);
      zip.on('end', () => resolve(found));
      zip.on('entry', (entry: yauzl.Entry) => {
        if (!entry.fileName.endsWith('.jpg')) return zip.readEntry();
        zip.openReadStream(entry, (e, stream) => {
          if (e) return reject(e);
          const chunks: Buffer[] = [];
          stream.on('data', (c: Buffer) => chunks.push(c));
          stream.on('error', reject);
          stream.on('end', () => {
            found.push(Buffer.concat(chunks));
            if (found.length >= n) {
              zip.close();
              resolve(found);
            } else zip.readEntry();
          });
        });
      });
      zip.readEntry();
    });
  });
}

describe('real photos (../shared/data/dogs-vs-cats/train.zip)', () => {
  const zipPath = requireShared('data', 'dogs-vs-cats', 'train.zip');
  it.skipIf(!zipPath)('decode and preprocess a few Kaggle photos', async () => {
    const photos = await firstJpegs(zipPath!, 6);
    expect(photos).toHaveLength(6);
    for (const bytes of photos) {
      const img = await decodeImage(bytes);
      expect(img.format).toBe('jpeg');
      expect(img.data.length).toBe(img.width * img.height * 3);
      const caffe = await preprocess(img, { size: 224, mode: 'caffe' });
      const tf = await preprocess(img, { size: 299, mode: 'tf' });
      const [tfMin, tfMax] = range(tf);
      const [caffeMin, caffeMax] = range(caffe);
      expect(tfMin).toBeGreaterThanOrEqual(-1);
      expect(tfMax).toBeLessThanOrEqual(1);
      expect(caffeMin).toBeGreaterThanOrEqual(Math.fround(-123.68));
      expect(caffeMax).toBeLessThanOrEqual(Math.fround(255 - 103.939));
      // A photo is not flat: the values spread out.
      expect(tfMax - tfMin).toBeGreaterThan(0.5);
    }
  });
});
