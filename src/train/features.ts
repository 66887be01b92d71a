/**
 * Feature extraction for a dataset, through the on-disk cache: a photo whose features (every
 * active backbone, every view, and ResNet50's ImageNet probabilities) are cached is not
 * decoded again; the rest are computed in batches at 'batch' priority, so an interactive
 * request waits for at most one batch. Unreadable photos are reported and skipped.
 */
import { join } from 'node:path';
import { CatdogError } from '../errors.ts';
import type { Classifier } from '../model/classifier.ts';
import { fuseViews } from '../model/classifier.ts';
import { BACKBONES, fusedWidth } from '../model/backbones/index.ts';
import type { BackboneName } from '../model/types.ts';
import type { DecodedImage } from '../vision/decode.ts';
import { contentHash, type Sample } from './dataset.ts';
import { FeatureCache, type View } from './feature-cache.ts';
import type { TrainingSet } from './fit.ts';

export interface ExtractProgress {
  done: number;
  total: number;
  computed: number;
  cached: number;
  failed: number;
  /** Images per second computed in this run (cached ones excluded). */
  imgPerSec: number;
  etaSec: number;
}

export interface ExtractOptions {
  /** Folder of the feature caches. */
  cacheDir: string;
  /** Also cache the mirror image's features (test-time augmentation). */
  flip?: boolean;
  batchSize?: number;
  signal?: AbortSignal;
  onProgress?: (p: ExtractProgress) => void;
}

export interface ExtractedSample {
  sample: Sample;
  hash: string;
}

export interface ExtractResult {
  ok: ExtractedSample[];
  failures: { sample: Sample; reason: string }[];
  computed: number;
  cached: number;
}

export interface FeatureStore {
  backbones: BackboneName[];
  caches: Map<BackboneName, FeatureCache>;
  /** ResNet50 ImageNet probabilities, when its weights have the top. */
  imagenet: FeatureCache | null;
  close(): void;
}

export function openFeatureStore(classifier: Classifier, cacheDir: string): FeatureStore {
  const info = classifier.info().backboneInfo;
  const caches = new Map<BackboneName, FeatureCache>();
  for (const b of info) caches.set(b.name, FeatureCache.open(cacheDir, b.name, b.weightsId, BACKBONES[b.name].features));
  const resnet = info.find((b) => b.name === 'resnet50' && b.hasTop);
  const imagenet = resnet ? FeatureCache.open(cacheDir, 'resnet50-imagenet', resnet.weightsId, 1000) : null;
  return {
    backbones: info.map((b) => b.name),
    caches,
    imagenet,
    close() {
      for (const c of caches.values()) c.close();
      imagenet?.close();
    },
  };
}

function complete(store: FeatureStore, hash: string, views: View[]): boolean {
  for (const c of store.caches.values()) for (const v of views) if (!c.has(hash, v)) return false;
  return !store.imagenet || store.imagenet.has(hash, 0);
}

export async function extractFeatures(samples: Sample[], classifier: Classifier, o: ExtractOptions): Promise<ExtractResult> {
  const store = openFeatureStore(classifier, o.cacheDir);
  try {
    return await extractInto(store, samples, classifier, o);
  } finally {
    store.close();
  }
}

export async function extractInto(store: FeatureStore, samples: Sample[], classifier: Classifier, o: ExtractOptions): Promise<ExtractResult> {
  const views: View[] = o.flip ? [0, 1] : [0];
  // ONNX Runtime on 2 cores is no faster per photo in larger batches, and batches cost memory.
  const batchSize = o.batchSize ?? 1;
  const result: ExtractResult = { ok: [], failures: [], computed: 0, cached: 0 };
  const started = performance.now();
  let pending: { item: ExtractedSample; image: DecodedImage }[] = [];
  let done = 0;
  const report = () => {
    const secs = (performance.now() - started) / 1000;
    const rate = result.computed / Math.max(secs, 1e-3);
    const remaining = samples.length - done;
    o.onProgress?.({
      done,
      total: samples.length,
      computed: result.computed,
      cached: result.cached,
      failed: result.failures.length,
      imgPerSec: rate,
      etaSec: rate > 0 ? remaining / rate : 0,
    });
  };
  const flush = async () => {
    if (!pending.length) return;
    const batch = pending;
    pending = [];
    const r = await classifier.backboneFeatures(
      batch.map((p) => p.image),
      { views: o.flip ? 2 : 1, priority: 'batch', signal: o.signal },
    );
    batch.forEach((p, i) => {
      for (const [name, cache] of store.caches) r.perBackbone[name]![i].forEach((f, v) => cache.put(p.item.hash, v as View, f));
      const probs = r.imagenet[i];
      if (store.imagenet && probs) store.imagenet.put(p.item.hash, 0, probs);
      result.ok.push(p.item);
    });
    result.computed += batch.length;
    done += batch.length;
    report();
  };
  for (const sample of samples) {
    o.signal?.throwIfAborted();
    let bytes: Buffer;
    try {
      bytes = await sample.read();
    } catch (err) {
      result.failures.push({ sample, reason: `cannot read: ${(err as Error).message}` });
      done++;
      continue;
    }
    const hash = contentHash(bytes);
    if (complete(store, hash, views)) {
      result.ok.push({ sample, hash });
      result.cached++;
      done++;
      if (result.cached % 500 === 0) report();
      continue;
    }
    try {
      pending.push({ item: { sample, hash }, image: await classifier.decode(bytes) });
    } catch (err) {
      result.failures.push({ sample, reason: err instanceof CatdogError ? err.message : String(err) });
      done++;
      continue;
    }
    if (pending.length >= batchSize) await flush();
  }
  await flush();
  report();
  return result;
}

/** Fused features (mean over views when `flip`) and labels of extracted samples, from the cache. */
export function trainingSet(store: FeatureStore, items: ExtractedSample[], flip: boolean): TrainingSet {
  const d = fusedWidth(store.backbones);
  const labelled = items.filter((i) => i.sample.label !== null);
  const x = new Float32Array(labelled.length * d);
  const y = new Uint8Array(labelled.length);
  labelled.forEach((item, k) => {
    x.set(fusedFromStore(store, item.hash, flip), k * d);
    y[k] = item.sample.label!;
  });
  return { x, y, n: labelled.length, d };
}

export function fusedFromStore(store: FeatureStore, hash: string, flip: boolean): Float32Array {
  const perBackbone: Partial<Record<BackboneName, Float32Array[]>> = {};
  for (const [name, cache] of store.caches) {
    const vs = (flip ? [0, 1] : [0]).map((v) => cache.get(hash, v as View));
    if (vs.some((v) => !v)) throw new Error(`features of ${hash.slice(0, 12)} missing from the cache`);
    perBackbone[name] = vs as Float32Array[];
  }
  return fuseViews(store.backbones, perBackbone);
}

export function defaultCacheDir(dataDir: string): string {
  return join(dataDir, 'features');
}
