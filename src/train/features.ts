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
import { FeatureCache } from './feature-cache.ts';
import type { BackboneInfo } from '../model/onnx/session.ts';
import { legacyViews, viewCode, type ViewSpec } from '../model/views.ts';
import type { ViewData } from './cv.ts';
import type { Pooling } from '../model/pooling.ts';
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
  /** Also cache the mirror image's features (test-time augmentation). Ignored when `views` is given. */
  flip?: boolean;
  /** The views to cache (default: 224, plus 224f with `flip`). */
  views?: readonly ViewSpec[];
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
  /** The same backbones' max-pooled features (pooling.ts), one cache file each beside the average's. */
  maxCaches: Map<BackboneName, FeatureCache>;
  /** ResNet50 ImageNet probabilities, when its weights have the top. */
  imagenet: FeatureCache | null;
  close(): void;
}

export function openFeatureStore(classifier: Classifier, cacheDir: string): FeatureStore {
  return openFeatureStoreFor(classifier.info().backboneInfo, cacheDir);
}

/**
 * The caches of some backbones' weights. `readOnly` reads a cache another process may still be
 * appending to (an extraction running in the background) without touching it.
 */
export function openFeatureStoreFor(
  info: readonly Pick<BackboneInfo, 'name' | 'weightsId' | 'hasTop'>[],
  cacheDir: string,
  options: { readOnly?: boolean } = {},
): FeatureStore {
  const caches = new Map<BackboneName, FeatureCache>();
  const maxCaches = new Map<BackboneName, FeatureCache>();
  for (const b of info) {
    caches.set(b.name, FeatureCache.open(cacheDir, b.name, b.weightsId, BACKBONES[b.name].features, options));
    maxCaches.set(b.name, FeatureCache.open(cacheDir, `${b.name}-max`, b.weightsId, BACKBONES[b.name].features, options));
  }
  const resnet = info.find((b) => b.name === 'resnet50' && b.hasTop);
  const imagenet = resnet ? FeatureCache.open(cacheDir, 'resnet50-imagenet', resnet.weightsId, 1000, options) : null;
  return {
    backbones: info.map((b) => b.name),
    caches,
    maxCaches,
    imagenet,
    close() {
      for (const c of caches.values()) c.close();
      for (const c of maxCaches.values()) c.close();
      imagenet?.close();
    },
  };
}

/**
 * The views of a photo with something not cached yet (either pooling, or the ImageNet
 * probabilities, which are cached for the views that are not mirrored: a mirror's are near-identical).
 */
function missingViews(store: FeatureStore, hash: string, views: readonly ViewSpec[]): ViewSpec[] {
  const caches = [...store.caches.values(), ...store.maxCaches.values()];
  return views.filter((v) => caches.some((c) => !c.has(hash, viewCode(v))) || (store.imagenet !== null && !v.flip && !store.imagenet.has(hash, viewCode(v))));
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
  const views = o.views ?? legacyViews(!!o.flip);
  // ONNX Runtime on 2 cores is no faster per photo in larger batches, and batches cost memory.
  const batchSize = o.batchSize ?? 1;
  const result: ExtractResult = { ok: [], failures: [], computed: 0, cached: 0 };
  const started = performance.now();
  // A batch shares its views: a photo runs only the views it lacks (a cache of 288 px features
  // asked for 224 too computes 224 alone), so a change of missing views starts a new batch.
  let pending: { item: ExtractedSample; image: DecodedImage; views: ViewSpec[] }[] = [];
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
    const views = batch[0]!.views;
    const r = await classifier.backboneFeatures(
      batch.map((p) => p.image),
      { views, priority: 'batch', signal: o.signal },
    );
    batch.forEach((p, i) => {
      for (const [name, cache] of store.caches) r.perBackbone[name]![i].forEach((f, k) => cache.put(p.item.hash, viewCode(views[k]), f));
      for (const [name, cache] of store.maxCaches) r.maxPerBackbone[name]![i].forEach((f, k) => cache.put(p.item.hash, viewCode(views[k]), f));
      r.imagenetViews[i].forEach((probs, k) => {
        if (store.imagenet && probs && !views[k].flip) store.imagenet.put(p.item.hash, viewCode(views[k]), probs);
      });
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
    const missing = missingViews(store, hash, views);
    if (!missing.length) {
      result.ok.push({ sample, hash });
      result.cached++;
      done++;
      if (result.cached % 500 === 0) report();
      continue;
    }
    if (pending.length && pending[0]!.views.map(viewCode).join() !== missing.map(viewCode).join()) await flush();
    try {
      pending.push({ item: { sample, hash }, image: await classifier.decode(bytes), views: missing });
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

/** Fused features (mean over the views: 224 and, when `flip`, 224f; or the views given) and labels of extracted samples, from the cache. */
export function trainingSet(store: FeatureStore, items: ExtractedSample[], flip: boolean | readonly ViewSpec[], pooling: Pooling = 'avg'): TrainingSet {
  const d = fusedWidth(store.backbones, pooling);
  const labelled = items.filter((i) => i.sample.label !== null);
  const x = new Float32Array(labelled.length * d);
  const y = new Uint8Array(labelled.length);
  labelled.forEach((item, k) => {
    x.set(fusedFromStore(store, item.hash, flip, pooling), k * d);
    y[k] = item.sample.label!;
  });
  return { x, y, n: labelled.length, d };
}

/** A photo's fused vector from the cache, as a head with these views and pooling reads it (classifier.ts `fuseViews`). */
export function fusedFromStore(store: FeatureStore, hash: string, flip: boolean | readonly ViewSpec[], pooling: Pooling = 'avg'): Float32Array {
  const views = typeof flip === 'boolean' ? legacyViews(flip) : flip;
  const read = (caches: Map<BackboneName, FeatureCache>) => {
    const per: Partial<Record<BackboneName, Float32Array[]>> = {};
    for (const [name, cache] of caches) {
      const vs = views.map((v) => cache.get(hash, viewCode(v)));
      if (vs.some((v) => !v)) throw new Error(`features of ${hash.slice(0, 12)} missing from the cache`);
      per[name] = vs as Float32Array[];
    }
    return per;
  };
  return fuseViews(store.backbones, read(store.caches), pooling === 'avg+max' ? read(store.maxCaches) : undefined);
}

/** ResNet50's cached ImageNet probabilities of the unmirrored views (what a stacked head needs), or [] without them. */
export function imagenetFromStore(store: FeatureStore, hash: string, views: readonly ViewSpec[]): Float32Array[] {
  if (!store.imagenet) return [];
  return views.filter((v) => !v.flip).flatMap((v) => store.imagenet!.get(hash, viewCode(v)) ?? []);
}

export function defaultCacheDir(dataDir: string): string {
  return join(dataDir, 'features');
}

/**
 * The labelled photos' features under each of `views`, one n x d matrix per view (backbones
 * concatenated in order), for cross-validation. A photo with a view missing from the cache is
 * left out and counted in `missing` (an extraction may still be running).
 */
export function viewData(
  store: FeatureStore,
  items: readonly ExtractedSample[],
  views: readonly ViewSpec[],
  pooling: Pooling = 'avg',
): { data: ViewData; items: ExtractedSample[]; missing: number } {
  const d = fusedWidth(store.backbones, pooling);
  // Per backbone in order: its average, then (avg+max) its maximum: the layout of fuseViews.
  const parts = store.backbones.flatMap((name) => (pooling === 'avg+max' ? [store.caches.get(name)!, store.maxCaches.get(name)!] : [store.caches.get(name)!]));
  const kept: { item: ExtractedSample; rows: Float32Array[][] }[] = [];
  let missing = 0;
  for (const item of items) {
    if (item.sample.label === null) continue;
    const rows: Float32Array[][] = [];
    let ok = true;
    for (const v of views) {
      const row: Float32Array[] = [];
      for (const cache of parts) {
        const f = cache.get(item.hash, viewCode(v));
        if (!f) ok = false;
        else row.push(f);
      }
      rows.push(row);
    }
    if (ok) kept.push({ item, rows });
    else missing++;
  }
  const n = kept.length;
  const x = views.map((_, v) => {
    const m = new Float32Array(n * d);
    kept.forEach((k, i) => {
      let at = i * d;
      for (const f of k.rows[v]!) {
        m.set(f, at);
        at += f.length;
      }
    });
    return m;
  });
  return {
    data: { views: [...views], x, y: Uint8Array.from(kept, (k) => k.item.sample.label!), n, d, groups: kept.map((k) => k.item.hash) },
    items: kept.map((k) => k.item),
    missing,
  };
}

/** Hashes of labelled photos of a dataset, read from the photos themselves (no backbone run). */
export async function hashSamples(samples: readonly Sample[], signal?: AbortSignal): Promise<{ ok: ExtractedSample[]; failures: { sample: Sample; reason: string }[] }> {
  const ok: ExtractedSample[] = [];
  const failures: { sample: Sample; reason: string }[] = [];
  for (const sample of samples) {
    signal?.throwIfAborted();
    try {
      ok.push({ sample, hash: contentHash(await sample.read()) });
    } catch (err) {
      failures.push({ sample, reason: `cannot read: ${(err as Error).message}` });
    }
  }
  return { ok, failures };
}
