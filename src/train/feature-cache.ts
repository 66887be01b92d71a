/**
 * On-disk cache of pooled backbone features, keyed by the photo's content hash, the view
 * (original or mirrored) and the backbone's weights identity.
 *
 * One append-only file per backbone+weights: records of [32-byte sha256][1-byte view][dim x f32] (dim: the backbone's width, 2048 for the three ImageNet ones).
 * Several writers may share a file (a /retrain in the bot while `catdog train` runs from the CLI):
 * each append holds the file's lock (`<file>.lock`, a pid lock file, src/file-lock.ts), goes at the
 * true end of the file and first indexes what other writers appended since. A process killed
 * mid-write leaves at most one partial record at the end, which the next writer (or open) cuts off
 * under the same lock. Every read checks the record's own key, so features never come back under
 * another photo's key. A rerun computes only what is missing.
 * A cache opened read-only (a study script beside a running extraction) takes no lock and ignores
 * a partial last record instead of cutting it.
 */
import { closeSync, existsSync, fstatSync, ftruncateSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { withFileLockSync } from '../file-lock.ts';

const HASH_BYTES = 32;

/** A view's one-byte code (src/model/views.ts): 0 = the photo at 224, 1 = its mirror image, others for other sizes. */
export type View = number;

export class FeatureCache {
  private readonly index = new Map<string, number>(); // `${hash}:${view}` → record number
  private fd: number;
  /** Records of the file this instance has indexed (its own and other writers'). */
  private records = 0;

  private readonly recordBytes: number;
  private readonly lockPath: string;

  private constructor(
    readonly path: string,
    /** Floats per record: the backbone's `features` for pooled features, 1000 for ImageNet probabilities. */
    readonly dim: number,
    readonly readOnly = false,
  ) {
    this.recordBytes = HASH_BYTES + 1 + dim * 4;
    this.lockPath = `${path}.lock`;
    this.fd = openSync(path, readOnly ? 'r' : existsSync(path) ? 'r+' : 'w+');
    if (readOnly) this.catchUp();
    else this.locked(() => this.catchUp());
  }

  private locked<T>(fn: () => T): T {
    return withFileLockSync(this.lockPath, fn, { what: `The feature cache ${this.path}`, timeoutMs: 60_000 });
  }

  /** Under the lock: cuts a torn last record, indexes records appended since we last looked; returns the record count. */
  private catchUp(): number {
    const size = fstatSync(this.fd).size;
    const whole = Math.floor(size / this.recordBytes);
    if (size !== whole * this.recordBytes && !this.readOnly) ftruncateSync(this.fd, whole * this.recordBytes); // a torn record: its writer died
    const head = Buffer.alloc(HASH_BYTES + 1);
    for (let r = this.records; r < whole; r++) {
      readSync(this.fd, head, 0, head.length, r * this.recordBytes);
      const key = `${head.subarray(0, HASH_BYTES).toString('hex')}:${head[HASH_BYTES]}`;
      if (!this.index.has(key)) this.index.set(key, r);
    }
    this.records = whole;
    return whole;
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

  /** Distinct records known to this instance. */
  get size(): number {
    return this.index.size;
  }

  has(hash: string, view: View = 0): boolean {
    return this.index.has(`${hash}:${view}`);
  }

  get(hash: string, view: View = 0): Float32Array | null {
    const key = `${hash}:${view}`;
    const r = this.index.get(key);
    if (r === undefined) return null;
    const buf = Buffer.alloc(this.recordBytes);
    const n = readSync(this.fd, buf, 0, buf.length, r * this.recordBytes);
    // The record must be the one asked for: never another photo's features under this key.
    if (n !== buf.length || buf.subarray(0, HASH_BYTES).toString('hex') !== hash || buf[HASH_BYTES] !== view) {
      this.index.delete(key);
      return null;
    }
    const out = new Float32Array(this.dim);
    out.set(new Float32Array(buf.buffer.slice(buf.byteOffset + HASH_BYTES + 1, buf.byteOffset + this.recordBytes)));
    return out;
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
    this.locked(() => {
      const at = this.catchUp();
      if (this.index.has(key)) return; // another writer stored it meanwhile
      writeSync(this.fd, rec, 0, rec.length, at * this.recordBytes);
      this.index.set(key, at);
      this.records = at + 1;
    });
  }

  close(): void {
    closeSync(this.fd);
  }
}
