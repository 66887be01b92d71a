/**
 * TEST DOUBLE for the bot, web and shutdown tests (never used by src/): a classifier that really
 * decodes the bytes with src/vision/decode.ts — so a text file, a truncated JPEG or a pixel bomb
 * raise the real typed errors — and answers from the pixels' mean colour, so every answer follows
 * from the photo a test generated:
 *   reddish (R > B)  → dog, P(dog) = sigmoid((R − B) / 32)
 *   bluish  (B > R)  → cat
 *   green dominant   → neither (its "ImageNet top" says so)
 * Plus a hold() for tests that need work in flight at a chosen moment.
 */
import sharp from 'sharp';
import { decodeImage, type ImageLimits } from '../../src/vision/decode.ts';
import type { BackboneName, ImageClassifier, Prediction } from '../../src/model/types.ts';

export const TEST_MODEL_ID = 'mean-colour-test-double';
export const TEST_BACKBONES: BackboneName[] = ['resnet50', 'xception'];

export interface Hold {
  /** Resolves when a classify() call reached the hold (it is now in flight). */
  reached: Promise<void>;
  release(): void;
}

export class MeanColourTestClassifier implements ImageClassifier {
  calls = 0;
  completed = 0;
  private holds: { reached: () => void; gate: Promise<void> }[] = [];

  constructor(private readonly limits: Partial<ImageLimits> = {}) {}

  info() {
    return { backbones: TEST_BACKBONES, model: TEST_MODEL_ID, loadMs: 1 };
  }

  /** The next classify() call waits (after decoding) until release(). */
  hold(): Hold {
    let reached!: () => void;
    let release!: () => void;
    const reachedP = new Promise<void>((r) => (reached = r));
    const gate = new Promise<void>((r) => (release = r));
    this.holds.push({ reached, gate });
    return { reached: reachedP, release };
  }

  async classify(bytes: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<Prediction> {
    this.calls++;
    const t0 = performance.now();
    const img = await decodeImage(bytes, this.limits);
    const decodeMs = performance.now() - t0;
    const hold = this.holds.shift();
    if (hold) {
      hold.reached();
      await hold.gate;
    }
    options.signal?.throwIfAborted();
    const [r, g, b] = meanRGB(img.data);
    const dog = 1 / (1 + Math.exp(-(r - b) / 32));
    const green = g > r + 40 && g > b + 40;
    const label: Prediction['label'] = green ? 'neither' : dog >= 0.5 ? 'dog' : 'cat';
    const top = green
      ? [{ index: 984, label: 'rapeseed', p: 0.7 }]
      : dog >= 0.5
        ? [{ index: 207, label: 'golden retriever', p: dog }]
        : [{ index: 281, label: 'tabby', p: 1 - dog }];
    this.completed++;
    const totalMs = performance.now() - t0;
    return {
      dog,
      label,
      backbones: TEST_BACKBONES,
      precision: 'fp32',
      model: TEST_MODEL_ID,
      imagenetTop: top,
      timings: { decodeMs, backbonesMs: { resnet50: 0, xception: 0 }, headMs: 0, totalMs },
    };
  }
}

function meanRGB(data: Buffer): [number, number, number] {
  let r = 0;
  let g = 0;
  let b = 0;
  const n = data.length / 3;
  for (let i = 0; i < data.length; i += 3) {
    r += data[i]!;
    g += data[i + 1]!;
    b += data[i + 2]!;
  }
  return [r / n, g / n, b / n];
}

/** The answer the double gives for a solid colour (what tests assert against). */
export function expectedDog([r, , b]: readonly [number, number, number]): number {
  return 1 / (1 + Math.exp(-(r - b) / 32));
}

/** A photo generated with sharp: a solid colour with a little deterministic noise. */
export async function makePhoto(
  rgb: readonly [number, number, number],
  options: { width?: number; height?: number; format?: 'jpeg' | 'png' | 'webp' } = {},
): Promise<Buffer> {
  const width = options.width ?? 64;
  const height = options.height ?? 48;
  const raw = Buffer.alloc(width * height * 3);
  let s = 7;
  for (let i = 0; i < raw.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    const jitter = ((s >>> 16) % 5) - 2; // -2..2, mean 0
    raw[i] = Math.max(0, Math.min(255, rgb[i % 3]! + jitter));
  }
  const img = sharp(raw, { raw: { width, height, channels: 3 } });
  const format = options.format ?? 'png';
  return format === 'jpeg' ? img.jpeg({ quality: 95 }).toBuffer() : format === 'webp' ? img.webp({ lossless: true }).toBuffer() : img.png().toBuffer();
}

export const DOGGY: readonly [number, number, number] = [200, 120, 60]; // reddish → dog
export const CATTY: readonly [number, number, number] = [60, 90, 190]; // bluish → cat
export const GRASSY: readonly [number, number, number] = [40, 200, 50]; // green → neither
