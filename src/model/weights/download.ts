/**
 * Keras's official ImageNet `_notop` weight files: where they live, their md5 hashes, and a
 * verified download (or copy of a file the user already has) into `models/weights/`.
 *
 * A file is streamed to `<name>.part`, hashed while it arrives, and renamed to `<name>` only when
 * the md5 matches the hash Keras itself checks (`file_hash=` in keras/src/applications/*.py, see
 * shared/reference/keras-weights.md). Anything that goes wrong (HTTP error, broken connection,
 * wrong md5, Ctrl-C) deletes the `.part`, so a half-written file is never left under the final
 * name. Running it again is cheap: a file already there with the right md5 is kept as it is.
 *
 * `KERAS_WEIGHTS_BASE_URL` (or `baseUrl`) replaces `https://storage.googleapis.com/tensorflow/keras-applications`,
 * keeping the `<model>/<file>` layout below it (a mirror, or a local server in tests).
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, statSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Agent, EnvHttpProxyAgent, fetch, type Dispatcher } from 'undici';
import { CatdogError, formatBytes, ModelError } from '../../errors.ts';
import { DEFAULT_MODELS_DIR } from '../../paths.ts';
import { BACKBONES } from '../backbones/index.ts';
import { KERAS_APPLICATIONS_URL, type KerasWeightsEntry } from '../backbones/types.ts';
import type { BackboneName } from '../types.ts';

export { KERAS_APPLICATIONS_URL, type KerasWeightsEntry } from '../backbones/types.ts';

/** Keras's official no-top ImageNet weights for each backbone (each definition's `kerasWeights`). */
export const KERAS_WEIGHTS: Readonly<Record<BackboneName, KerasWeightsEntry>> = Object.freeze(
  Object.fromEntries(Object.values(BACKBONES).map((b) => [b.name, b.kerasWeights])) as Record<BackboneName, KerasWeightsEntry>,
);

export const ALL_BACKBONES = Object.keys(BACKBONES) as BackboneName[];

/** Fetched by default: the backbones whose default weights are Keras's file. */
export const DEFAULT_KERAS_DOWNLOADS: readonly BackboneName[] = ALL_BACKBONES.filter((b) => BACKBONES[b].defaultWeights === 'keras');

/** Other Keras files people have, by md5, to say what they gave us instead of "unknown file". */
const OTHER_KNOWN_FILES: Record<string, string> = {
  '2cb95161c43110f7111970584f804107': "Keras's ResNet50 file *with* the top (resnet50_weights_tf_dim_ordering_tf_kernels.h5)",
  '9a0d58056eeedaa3f26cb7ebd46da564': "Keras's InceptionV3 file *with* the top (inception_v3_weights_tf_dim_ordering_tf_kernels.h5)",
  '0a58e3b7378bc2990ea3b43d5981f1f6': "Keras's Xception file *with* the top (xception_weights_tf_dim_ordering_tf_kernels.h5)",
  a7b3fe01876f51b976af0dea6bc144eb: 'the old keras-applications v0.2 ResNet50 file (a different graph, with top)',
  a268eb855778b3df3c7506639542a6af: 'the old keras-applications v0.2 ResNet50 no-top file (a different graph: conv1/bn_conv1/res2a_… names)',
};

/** The folder weight files are saved in. */
export function kerasWeightsDir(root = DEFAULT_MODELS_DIR): string {
  return join(root, 'weights');
}

function rebase(url: string, baseUrl: string | undefined): string {
  if (!baseUrl || !url.startsWith(`${KERAS_APPLICATIONS_URL}/`)) return url;
  return `${baseUrl.replace(/\/+$/, '')}/${url.slice(KERAS_APPLICATIONS_URL.length + 1)}`;
}

/** A backbone's download URL, under `baseUrl` (configured as `KERAS_WEIGHTS_BASE_URL`; none: Keras's bucket). */
export function kerasWeightsUrl(backbone: BackboneName, baseUrl?: string): string {
  return rebase(KERAS_WEIGHTS[backbone].url, baseUrl);
}

/** MD5 of a file, streamed. */
export async function md5File(path: string): Promise<string> {
  const hash = createHash('md5');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Takes a progress line to show (`final`: the last one, when the transfer succeeded); `done()` after a failure. */
export interface ProgressSink {
  update(line: string, final?: boolean): void;
  done(): void;
}

export interface TransferOptions {
  /** One line per step (start, result). Default: stderr. */
  log?: (line: string) => void;
  /** Where the progress line goes (the CLI passes its printer); none when left out. */
  progress?: ProgressSink | null;
  signal?: AbortSignal;
}

const defaultLog = (line: string) => process.stderr.write(`${line}\n`);

function mb(n: number): string {
  return (n / 1024 / 1024).toFixed(1);
}

/** Counts and hashes the bytes flowing through, and draws progress. */
function meter(label: string, total: number | null, progress: ProgressSink | null) {
  const hash = createHash('md5');
  const started = Date.now();
  let bytes = 0;
  const printer = progress;
  const line = () => {
    const sec = Math.max(0.001, (Date.now() - started) / 1000);
    const rate = `${mb(bytes / sec)} MB/s`;
    return total
      ? `${label}: ${((100 * bytes) / total).toFixed(0).padStart(3)}% ${mb(bytes)}/${mb(total)} MB ${rate}`
      : `${label}: ${mb(bytes)} MB ${rate}`;
  };
  let lastDraw = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      bytes += chunk.length;
      const now = Date.now();
      if (printer && now - lastDraw >= 200) {
        lastDraw = now;
        printer.update(line());
      }
      cb(null, chunk);
    },
  });
  return {
    stream,
    get bytes() {
      return bytes;
    },
    digest: () => hash.digest('hex'),
    finish(ok: boolean) {
      if (!printer) return;
      if (ok) printer.update(line(), true);
      else printer.done();
    },
    seconds: () => (Date.now() - started) / 1000,
  };
}

/** The useful part of a network error: undici wraps the real one ("getaddrinfo ENOTFOUND …", "other side closed") as `cause`. */
function errorDetail(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: unknown }).cause;
  const inner = (err.message === 'fetch failed' || err.message === 'terminated') && cause instanceof Error ? cause : err;
  const code = (inner as { code?: string }).code;
  return code && !inner.message.includes(code) ? `${inner.message}, ${code}` : inner.message;
}

const LOOPBACK = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])$/;

/** Loopback directly; anything else through the proxy the environment names, if any (EnvHttpProxyAgent goes direct without one). */
function dispatcherFor(url: URL): Dispatcher {
  const timeouts = { headersTimeout: 60_000, bodyTimeout: 60_000 };
  return LOOPBACK.test(url.hostname) ? new Agent(timeouts) : new EnvHttpProxyAgent(timeouts);
}

function checksumError(what: string, got: string, expected: string, bytes: number): ModelError {
  const known = OTHER_KNOWN_FILES[got];
  const hint = known
    ? ` That is ${known}; catdog needs the _notop file.`
    : ' The file is corrupt, incomplete or a different file.';
  return new ModelError(
    'weights_checksum',
    `${what} (${formatBytes(bytes)}) has md5 ${got}, but Keras's file has md5 ${expected}.${hint} Nothing was saved.`,
  );
}

/**
 * Downloads `url` to `dest`, verifying its md5. Streams to `dest + '.part'` and renames it into
 * place only when the md5 matches; on any failure the `.part` is deleted and a ModelError says why.
 */
export async function downloadVerified(url: string, md5: string, dest: string, opts: TransferOptions = {}): Promise<void> {
  const log = opts.log ?? defaultLog;
  const progress = opts.progress ?? null;
  const name = basename(dest);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (err) {
    throw new ModelError('weights_download', `"${url}" is not a URL I can download from.`, { cause: err });
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new ModelError('weights_download', `I only download over https:// or http://, not ${parsed.protocol}`);
  }
  await mkdir(resolve(dest, '..'), { recursive: true });
  const part = `${dest}.part`;
  const dispatcher = dispatcherFor(parsed);
  let m: ReturnType<typeof meter> | null = null;
  try {
    let res;
    try {
      res = await fetch(parsed, { signal: opts.signal, dispatcher, redirect: 'follow', headers: { 'user-agent': 'catdog-weights' } });
    } catch (err) {
      if (opts.signal?.aborted) throw new ModelError('weights_download', `Download of ${name} was cancelled; nothing was saved.`, { cause: err });
      throw new ModelError('weights_download', `Could not reach ${parsed.host} to download ${name} (${errorDetail(err)}). Is the network up?`, {
        cause: err,
      });
    }
    if (!res.ok || !res.body) {
      await res.body?.cancel().catch(() => {});
      const hint =
        res.status === 404 || res.status === 403
          ? ' The file is not at that address; check the URL (and KERAS_WEIGHTS_BASE_URL if you set it).'
          : ' Try again later.';
      throw new ModelError('weights_download', `Downloading ${name} failed: ${url} answered HTTP ${res.status}.${hint}`);
    }
    const declared = Number(res.headers.get('content-length'));
    const total = Number.isFinite(declared) && declared > 0 ? declared : null;
    log(`Downloading ${name}${total ? ` (${mb(total)} MB)` : ''} from ${url}`);
    m = meter(name, total, progress);
    try {
      await pipeline(Readable.from(res.body as AsyncIterable<Uint8Array>), m.stream, createWriteStream(part), { signal: opts.signal });
    } catch (err) {
      const at = total ? `${mb(m.bytes)} of ${mb(total)} MB` : `${mb(m.bytes)} MB`;
      if (opts.signal?.aborted) {
        throw new ModelError('weights_download', `Download of ${name} was cancelled after ${at}; nothing was saved.`, { cause: err });
      }
      throw new ModelError('weights_download', `Download of ${name} broke off after ${at} (${errorDetail(err)}); nothing was saved. Run it again.`, {
        cause: err,
      });
    }
    if (total !== null && m.bytes !== total) {
      throw new ModelError(
        'weights_download',
        `Download of ${name} ended after ${formatBytes(m.bytes)} of the ${formatBytes(total)} announced; nothing was saved. Run it again.`,
      );
    }
    const got = m.digest();
    if (got !== md5) throw checksumError(`The downloaded ${name}`, got, md5, m.bytes);
    await rename(part, dest);
    m.finish(true);
    log(`Saved ${dest} (${formatBytes(m.bytes)}, md5 ok, ${m.seconds().toFixed(1)} s).`);
  } catch (err) {
    m?.finish(false);
    await rm(part, { force: true });
    if (err instanceof CatdogError) throw err;
    throw new ModelError('weights_download', `Downloading ${name} failed: ${errorDetail(err)}. Nothing was saved.`, { cause: err });
  } finally {
    await dispatcher.close().catch(() => {});
  }
}

/** Copies a local file to `dest` through `dest.part`, verifying its md5 on the way (same guarantees as downloadVerified). */
export async function copyVerified(src: string, md5: string, dest: string, opts: TransferOptions = {}): Promise<void> {
  const log = opts.log ?? defaultLog;
  const progress = opts.progress ?? null;
  const name = basename(dest);
  if (!existsSync(src)) throw new ModelError('weights_missing', `There is no file at ${src}.`);
  if (!statSync(src).isFile()) throw new ModelError('weights_missing', `${src} is not a file.`);
  if (resolve(src) === resolve(dest)) {
    const got = await md5File(src);
    if (got !== md5) throw checksumError(src, got, md5, statSync(src).size);
    return;
  }
  await mkdir(resolve(dest, '..'), { recursive: true });
  const part = `${dest}.part`;
  const m = meter(name, statSync(src).size, progress);
  try {
    await pipeline(createReadStream(src), m.stream, createWriteStream(part), { signal: opts.signal });
    const got = m.digest();
    if (got !== md5) throw checksumError(src, got, md5, m.bytes);
    await rename(part, dest);
    m.finish(true);
    log(`Copied ${src} to ${dest} (${formatBytes(m.bytes)}, md5 ok).`);
  } catch (err) {
    m.finish(false);
    await rm(part, { force: true });
    if (err instanceof CatdogError) throw err;
    throw new ModelError('weights_copy', `Copying ${src} to ${dest} failed (${errorDetail(err)}); nothing was saved.`, { cause: err });
  }
}

export interface EnsureOptions extends TransferOptions {
  /** Destination folder; default models/weights (CATDOG_MODELS_DIR moves it). */
  dir?: string;
  /** Replaces Keras's bucket URL (the CLI passes KERAS_WEIGHTS_BASE_URL). */
  baseUrl?: string;
  /** A local copy to verify and copy instead of downloading. */
  from?: string;
  /** Replaces table entries (a mirror with other files; tests). */
  entries?: Partial<Record<BackboneName, KerasWeightsEntry>>;
}

export interface EnsureResult {
  backbone: BackboneName;
  path: string;
  action: 'present' | 'downloaded' | 'copied';
}

export function entryFor(backbone: BackboneName, opts: EnsureOptions): KerasWeightsEntry {
  return opts.entries?.[backbone] ?? KERAS_WEIGHTS[backbone];
}

/**
 * Makes sure `<dir>/<file>` holds the backbone's Keras notop weights with the right md5: kept when
 * it is already there, else copied from `from`, else downloaded.
 */
export async function ensureKerasWeights(backbone: BackboneName, opts: EnsureOptions = {}): Promise<EnsureResult> {
  const log = opts.log ?? defaultLog;
  const e = entryFor(backbone, opts);
  const dest = join(opts.dir ?? kerasWeightsDir(), e.file);
  if (existsSync(dest) && (!opts.from || resolve(opts.from) !== resolve(dest))) {
    const got = await md5File(dest);
    if (got === e.md5) {
      log(`${e.file} is already in ${resolve(dest, '..')} (md5 ok).`);
      return { backbone, path: dest, action: 'present' };
    }
    log(`${dest} is there but its md5 is ${got}, not ${e.md5}; replacing it.`);
  }
  if (opts.from) {
    await copyVerified(opts.from, e.md5, dest, opts);
    return { backbone, path: dest, action: 'copied' };
  }
  const url = rebase(e.url, opts.baseUrl);
  await downloadVerified(url, e.md5, dest, opts);
  return { backbone, path: dest, action: 'downloaded' };
}

/** Which backbone a local file is, by md5 (among `among`); throws a ModelError naming what it is instead. */
export async function identifyKerasFile(path: string, among: readonly BackboneName[] = ALL_BACKBONES, entries?: EnsureOptions['entries']): Promise<BackboneName> {
  if (!existsSync(path)) throw new ModelError('weights_missing', `There is no file at ${path}.`);
  if (!statSync(path).isFile()) throw new ModelError('weights_missing', `${path} is not a file.`);
  const got = await md5File(path);
  const table = (b: BackboneName) => entries?.[b] ?? KERAS_WEIGHTS[b];
  const hit = ALL_BACKBONES.find((b) => table(b).md5 === got);
  if (hit && among.includes(hit)) return hit;
  if (hit) throw new ModelError('weights_checksum', `${path} is the ${hit} file (${table(hit).file}), which --only leaves out.`);
  const known = OTHER_KNOWN_FILES[got];
  throw new ModelError(
    'weights_checksum',
    known
      ? `${path} is ${known}; catdog needs the _notop files: ${among.map((b) => table(b).file).join(', ')}.`
      : `${path} (md5 ${got}) is none of Keras's notop files (${among.map((b) => `${table(b).file} md5 ${table(b).md5}`).join('; ')}).`,
  );
}
