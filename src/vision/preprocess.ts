/**
 * From decoded RGB pixels to backbone input tensors, the way Keras does it:
 *   resize: squash to size x size, no crop (Keras `load_img(path, target_size=(size, size))`),
 *           but with an antialiased kernel (see RESIZE_KERNEL);
 *   values: `keras.applications.imagenet_utils.preprocess_input` in mode
 *           'caffe' (ResNet50): RGB -> BGR, minus the ImageNet means [103.939, 116.779, 123.68] (B, G, R), no scaling;
 *           'tf' (InceptionV3, Xception): x / 127.5 - 1.
 * The same functions produce the training features and serve inference, so the two always agree.
 */
import sharp, { type KernelEnum } from 'sharp';
import type { DecodedImage } from './decode.ts';

/** Keras `preprocess_input` modes. caffe: RGB->BGR minus ImageNet means; tf: x/127.5-1. */
export type PreprocessMode = 'caffe' | 'tf';

export interface InputSpec {
  /** Square input side in pixels: 224 (ResNet50) or 299 (InceptionV3, Xception). */
  size: number;
  mode: PreprocessMode;
}

/**
 * The sharp kernel used to resize to the backbone input: 'lanczos3'.
 *
 * Keras's `load_img(target_size=...)` defaults to nearest neighbour. We deliberately do not copy
 * that: people post full-resolution phone photos (often 4000x3000), and nearest-neighbour
 * downscaling by 10x+ keeps one pixel in a hundred, so fur, whiskers and textures alias into
 * noise that changes with a one-pixel shift of the photo. libvips widens the Lanczos-3 window by
 * the reduction factor (after an exact box pre-shrink for large factors), which low-pass filters
 * before resampling: no aliasing, the sharpest of sharp's antialiased kernels (more detail kept
 * than 'mitchell' / 'cubic' / 'linear'), and the same filter family as PIL's LANCZOS, the usual
 * "high quality" choice for CNN inputs. Resizing happens in 8-bit sRGB, like PIL and Keras.
 * Training features and inference both go through `resizeRGB`, so they agree exactly.
 */
export const RESIZE_KERNEL = 'lanczos3' satisfies keyof KernelEnum;

/** Keras 'caffe' means, in B, G, R order. */
const CAFFE_MEAN_BGR = [103.939, 116.779, 123.68] as const;

/**
 * Per-byte lookup tables, computed once, bit-identical to Keras's float32 arithmetic:
 * numpy does `x[..., c] -= mean` / `x /= 127.5; x -= 1.` in float32, and a double-precision
 * operation rounded to float32 equals the float32 operation for these values.
 * caffe: [lutB, lutG, lutR] indexed by the B, G, R byte; tf: one table for every channel.
 */
const CAFFE_LUT_BGR: readonly Float32Array[] = CAFFE_MEAN_BGR.map((mean) => {
  const lut = new Float32Array(256);
  const m = Math.fround(mean);
  for (let v = 0; v < 256; v++) lut[v] = v - m;
  return lut;
});
const TF_LUT: Float32Array = (() => {
  const lut = new Float32Array(256);
  for (let v = 0; v < 256; v++) lut[v] = Math.fround(v / 127.5) - 1;
  return lut;
})();

function checkRGB(rgb: Uint8Array, size: number): number {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`size must be a positive integer, got ${size}`);
  const pixels = size * size;
  if (rgb.length !== pixels * 3) {
    throw new RangeError(`expected ${size}x${size}x3 = ${pixels * 3} bytes of RGB, got ${rgb.length}`);
  }
  return pixels;
}

/**
 * Squashes (fit 'fill': aspect ratio not kept, nothing cropped) to size x size x 3 uint8 RGB,
 * like Keras `load_img(target_size=(size, size))`, with RESIZE_KERNEL instead of nearest.
 * Always returns a new buffer.
 */
export async function resizeRGB(img: DecodedImage, size: number): Promise<Buffer> {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`size must be a positive integer, got ${size}`);
  if (img.data.length !== img.width * img.height * 3) {
    throw new RangeError(`DecodedImage holds ${img.data.length} bytes, expected ${img.width}x${img.height}x3`);
  }
  if (img.width === size && img.height === size) return Buffer.from(img.data);
  const { data, info } = await sharp(img.data, {
    raw: { width: img.width, height: img.height, channels: 3 },
    limitInputPixels: false, // already bounded by decodeImage
  })
    .resize(size, size, { fit: 'fill', kernel: RESIZE_KERNEL })
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.width !== size || info.height !== size || info.channels !== 3) {
    throw new Error(`resize returned ${info.width}x${info.height}x${info.channels}, expected ${size}x${size}x3`);
  }
  return data;
}

/**
 * Planar [3, size, size] float32 tensor (one image of an NCHW batch), single pass over the pixels.
 * caffe: planes are B, G, R (Keras flips RGB to BGR) minus the ImageNet means; tf: R, G, B in [-1, 1].
 * Writes into `out` at `offset` when given (e.g. image i of a batch: offset = i * 3 * size * size).
 */
export function toTensorNCHW(
  rgb: Uint8Array,
  size: number,
  mode: PreprocessMode,
  out?: Float32Array,
  offset = 0,
): Float32Array {
  const pixels = checkRGB(rgb, size);
  const target = out ?? new Float32Array(3 * pixels);
  if (!Number.isInteger(offset) || offset < 0 || offset + 3 * pixels > target.length) {
    throw new RangeError(`output of ${target.length} floats cannot hold ${3 * pixels} at offset ${offset}`);
  }
  const p0 = offset;
  const p1 = offset + pixels;
  const p2 = offset + 2 * pixels;
  if (mode === 'caffe') {
    const [lutB, lutG, lutR] = CAFFE_LUT_BGR as [Float32Array, Float32Array, Float32Array];
    for (let i = 0, j = 0; i < pixels; i++, j += 3) {
      target[p0 + i] = lutB[rgb[j + 2]!]!;
      target[p1 + i] = lutG[rgb[j + 1]!]!;
      target[p2 + i] = lutR[rgb[j]!]!;
    }
  } else if (mode === 'tf') {
    const lut = TF_LUT;
    for (let i = 0, j = 0; i < pixels; i++, j += 3) {
      target[p0 + i] = lut[rgb[j]!]!;
      target[p1 + i] = lut[rgb[j + 1]!]!;
      target[p2 + i] = lut[rgb[j + 2]!]!;
    }
  } else {
    throw new RangeError(`unknown preprocess mode ${String(mode)}`);
  }
  return target;
}

/**
 * Interleaved [size, size, 3] float32 tensor (channels last), for the TF.js reference.
 * Channel order as Keras channels_last: caffe gives B, G, R; tf gives R, G, B.
 */
export function toTensorNHWC(rgb: Uint8Array, size: number, mode: PreprocessMode): Float32Array {
  const pixels = checkRGB(rgb, size);
  const out = new Float32Array(3 * pixels);
  if (mode === 'caffe') {
    const [lutB, lutG, lutR] = CAFFE_LUT_BGR as [Float32Array, Float32Array, Float32Array];
    for (let j = 0; j < out.length; j += 3) {
      out[j] = lutB[rgb[j + 2]!]!;
      out[j + 1] = lutG[rgb[j + 1]!]!;
      out[j + 2] = lutR[rgb[j]!]!;
    }
  } else if (mode === 'tf') {
    for (let j = 0; j < out.length; j++) out[j] = TF_LUT[rgb[j]!]!;
  } else {
    throw new RangeError(`unknown preprocess mode ${String(mode)}`);
  }
  return out;
}

/** Resize + value preprocessing: a [3, size, size] NCHW tensor ready for a backbone. */
export async function preprocess(img: DecodedImage, spec: InputSpec): Promise<Float32Array> {
  const rgb = await resizeRGB(img, spec.size);
  return toTensorNCHW(rgb, spec.size, spec.mode);
}

/** Mirror image (left <-> right) of a size x size x 3 RGB buffer, for test-time augmentation. */
export function flipHorizontalRGB(rgb: Uint8Array, size: number): Buffer {
  checkRGB(rgb, size);
  const out = Buffer.allocUnsafe(rgb.length);
  const row = size * 3;
  for (let y = 0; y < size; y++) {
    const base = y * row;
    for (let x = 0; x < size; x++) {
      const src = base + x * 3;
      const dst = base + (size - 1 - x) * 3;
      out[dst] = rgb[src]!;
      out[dst + 1] = rgb[src + 1]!;
      out[dst + 2] = rgb[src + 2]!;
    }
  }
  return out;
}
