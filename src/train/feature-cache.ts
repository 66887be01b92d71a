/**
 * On-disk cache of pooled backbone features, keyed by the photo's content hash, the view
 * (original or mirrored) and the backbone's weights identity.
 *
 * One append-only file per backbone+weights: records of [32-byte sha256][1-byte view][dim x f32] (dim: the backbone's width, 2048 for the three ImageNet ones).
 * A record is written with a single write() call; a process killed mid-write leaves at most one
 * partial record at the end, which the next open cuts off. So an interrupted extraction leaves
 * the cache consistent, and a rerun computes only what is missing. A cache opened read-only
 * (another process may be appending) ignores a partial last record instead of cutting it.
 */
import { closeSync, existsSync, fstatSync, ftruncateSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';

const HASH_BYTES = 32;

/** A view's one-byte code (src/model/views.ts): 0 = the photo at 224, 1 = its mirror image, others for other sizes. */
export type View = number;

export class FeatureCache {
  private readonly index = new Map<string, number>(); // `${hash}:${view}` → record number
  private fd: number;
  private records: number;

  private readonly recordBytes: number;

  private constructor(
    readonly path: string,
    /** Floats per record: the backbone's `features` for pooled features, 1000 for ImageNet probabilities. */
    readonly dim: number,
    readonly readOnly = false,
  ) {
    this.recordBytes = HASH_BYTES + 1 + dim * 4;
    const RECORD_BYTES = this.recordBytes;
    this.fd = openSync(path, readOnly ? 'r' : existsSync(path) ? 'r+' : 'w+');
    const size = fstatSync(this.fd).size;
    this.records = Math.floor(size / RECORD_BYTES);
    if (size !== this.records * RECORD_BYTES && !readOnly) ftruncateSync(this.fd, this.records * RECORD_BYTES); // cut a torn record
    const head = Buffer.alloc(HASH_BYTES + 1);
    for (let r = 0; r < this.records; r++) {
      readSync(this.fd, head, 0, head.length, r * RECORD_BYTES);
      this.index.set(`${head.subarray(0, HASH_BYTES).toString('hex')}:${head[HASH_BYTES]}`, r);
    }
  }

  /** Opens (or creates) the cache for one backbone's weights under `dir`. */
  static open(dir: string, name: string, weightsId: string, dim: number, options: { readOnly?: boolean } = {}): FeatureCache {
    const path = join(dir, `${name}-${weightsId.slice(0, 16)}.f${dim}`);
    if (options.readOnly) {
      if (!existsSync(path)) throw new Error(`no feature cache at ${path}`);
      return new FeatureCache(path, dim, true);
    }
    mkdirSync(dir, { recursive: true });
    return new FeatureCache(path, dim);
  }

  get size(): number {
    return this.records;
  }

  has(hash: string, view: View = 0): boolean {
    return this.index.has(`${hash}:${view}`);
  }

  get(hash: string, view: View = 0): Float32Array | null {
    const r = this.index.get(`${hash}:${view}`);
    if (r === undefined) return null;
    const buf = Buffer.alloc(this.dim * 4);
    readSync(this.fd, buf, 0, buf.length, r * this.recordBytes + HASH_BYTES + 1);
    return new Float32Array(buf.buffer, buf.byteOffset, this.dim);
  }

  put(hash: string, view: View, features: Float32Array): void {
    if (this.readOnly) throw new Error(`${this.path} is open read-only`);
    if (!Number.isInteger(view) || view < 0 || view > 255) throw new RangeError(`view code ${view} is not a byte`);
    if (features.length !== this.dim) throw new Error(`vector of ${features.length}, expected ${this.dim}`);
    const key = `${hash}:${view}`;
    if (this.index.has(key)) return;
    const rec = Buffer.alloc(this.recordBytes);
    Buffer.from(hash, 'hex').copy(rec, 0);
    rec[HASH_BYTES] = view;
    Buffer.from(features.buffer, features.byteOffset, features.byteLength).copy(rec, HASH_BYTES + 1);
    writeSync(this.fd, rec, 0, rec.length, this.records * this.recordBytes);
    this.index.set(key, this.records);
    this.records++;
  }

  close(): void {
    closeSync(this.fd);
  }
}
