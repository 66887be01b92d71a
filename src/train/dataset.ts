/**
 * The dataset layer: photos from Kaggle's "Dogs vs. Cats" zips (train.zip, test.zip, or any zip
 * with the same layout) or from the same files unpacked into a folder, with or without the
 * `train/` / `test/` top folder. Several sources combine into one dataset.
 *
 * Zips are read in place with yauzl's random access: the central directory is read once when the
 * source opens, and `Sample.read()` opens one entry's stream on demand (concurrent reads of one
 * zip are safe: each is a positional read of the shared file descriptor). Nothing is extracted to
 * disk, and symbolic links are never followed (in a folder) nor read (in a zip).
 *
 * Naming follows Kaggle: `cat.N.jpg` / `dog.N.jpg` are labelled training photos (1 = dog, 0 = cat),
 * `N.jpg` is the test photo with Kaggle id N. Directories, `__MACOSX` and dotfiles are passed over
 * in silence; any other name is reported in `Dataset.skipped`, never fatal.
 */
import { createHash } from 'node:crypto';
import { constants, type Dirent } from 'node:fs';
import { open as openFile, readdir, readFile, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { crc32 } from 'node:zlib';
import yauzl from 'yauzl';
import { DatasetError, formatBytes } from '../errors.ts';

export type Label = 0 | 1;
export type DatasetKind = 'train' | 'test' | 'auto';

export interface Sample {
  /** Stable across runs and machines: `${basename(source)}:${path inside the source}`, e.g. `train.zip:train/cat.1.jpg`. */
  key: string;
  /** Absolute path of the zip or folder this photo comes from. */
  source: string;
  /** The file name, e.g. `cat.1.jpg` or `17.jpg`. */
  name: string;
  /** 1 = dog, 0 = cat; null for a test photo. */
  label: Label | null;
  /** Kaggle test id (`test/N.jpg` → N); null for a training photo. */
  id: number | null;
  /** The photo's bytes, read on demand. Rejects with a DatasetError when the entry is damaged or the dataset closed. */
  read(): Promise<Buffer>;
}

/** A file in a source that is not taken as a photo, and why. */
export interface SkippedEntry {
  source: string;
  path: string;
  reason: string;
}

export interface Dataset {
  /** Absolute paths of the sources, in the order given (duplicates removed). */
  sources: string[];
  /** Training photos sorted by key (numbers in natural order), then test photos sorted by id. */
  samples: Sample[];
  /** Files that are not Kaggle photo names (or do not belong to the requested kind), with the reason; by source, then path. */
  skipped: SkippedEntry[];
  /** Releases the zips' file descriptors; reads still in flight finish first. Idempotent. */
  close(): Promise<void>;
}

/** Largest photo read from a source. Kaggle's are under 1 MB: this guards against zip bombs and stray huge files. */
export const MAX_PHOTO_BYTES = 64 * 1024 * 1024;

/** How many folder levels a folder source is searched: itself, its train/ or test/ folder, and one more. */
const MAX_FOLDER_DEPTH = 3;

const TRAIN_NAME = /^(cat|dog)\.(\d+)\.jpe?g$/i;
const TEST_NAME = /^(\d+)\.jpe?g$/i;
const LAYOUT_HINT = 'expected cat.N.jpg or dog.N.jpg (training) or N.jpg (test)';

/** The last component of a path inside a source ('/' or '\' separated). */
function fileName(path: string): string {
  const parts = path.split(/[\\/]/);
  return parts[parts.length - 1] ?? path;
}

/** 1 for `dog.N.jpg`, 0 for `cat.N.jpg` (a path is fine: only its file name counts), null otherwise. */
export function labelFromName(name: string): Label | null {
  const m = TRAIN_NAME.exec(fileName(name));
  if (!m) return null;
  return m[1]!.toLowerCase() === 'dog' ? 1 : 0;
}

/** N for a Kaggle test photo `N.jpg` (a path is fine: only its file name counts), null otherwise. */
export function idFromName(name: string): number | null {
  const m = TEST_NAME.exec(fileName(name));
  if (!m) return null;
  const id = Number(m[1]);
  return Number.isSafeInteger(id) ? id : null;
}

/** SHA-256 of a photo's bytes, lowercase hex: the key of the feature cache. */
export function contentHash(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Orders keys as people read them: runs of digits compare by value, so `cat.2.jpg` comes before
 * `cat.10.jpg`; everything else compares by UTF-16 code unit (no locale, the same on every machine).
 */
export function compareKeys(a: string, b: string): number {
  if (a === b) return 0;
  const ca = a.match(/\d+|\D+/g) ?? [];
  const cb = b.match(/\d+|\D+/g) ?? [];
  for (let i = 0; i < Math.min(ca.length, cb.length); i++) {
    const x = ca[i]!;
    const y = cb[i]!;
    if (x === y) continue;
    const xDigits = x.charCodeAt(0) >= 48 && x.charCodeAt(0) <= 57;
    const yDigits = y.charCodeAt(0) >= 48 && y.charCodeAt(0) <= 57;
    if (xDigits && yDigits) {
      const sx = x.replace(/^0+/, '');
      const sy = y.replace(/^0+/, '');
      if (sx.length !== sy.length) return sx.length - sy.length;
      if (sx !== sy) return sx < sy ? -1 : 1;
      return x.length - y.length; // same value, fewer leading zeros first
    }
    return x < y ? -1 : 1;
  }
  return ca.length - cb.length;
}

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Passed over in silence: macOS resource forks and dotfiles (`.DS_Store`, `._cat.1.jpg`), anywhere in the path. */
function isClutter(path: string): boolean {
  return path.split(/[\\/]/).some((part) => part === '__MACOSX' || part.startsWith('.'));
}

/** One opened source: the files it holds (paths inside it, '/'-separated) and a reader for each. */
interface SourceReader {
  path: string;
  files: string[];
  skipped: SkippedEntry[];
  read(pathInside: string): Promise<Buffer>;
  close(): void;
}

function closedError(source: string, pathInside: string): DatasetError {
  return new DatasetError('dataset_closed', `Cannot read ${pathInside} from ${source}: the dataset was closed.`);
}

async function openZipSource(path: string): Promise<SourceReader> {
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.openPromise(path, { autoClose: false, lazyEntries: true, validateEntrySizes: true });
  } catch (err) {
    throw new DatasetError(
      'dataset_corrupt',
      `${path} is not a readable zip file (${errorText(err)}). Pass a Kaggle zip such as train.zip or test.zip, or the folder it unpacks to.`,
      { cause: err },
    );
  }
  const entries = new Map<string, yauzl.Entry>();
  const skipped: SkippedEntry[] = [];
  const skip = (p: string, reason: string) => skipped.push({ source: path, path: p, reason });
  try {
    for await (const entry of zip.eachEntry()) {
      const p = entry.fileName;
      if (p.endsWith('/') || isClutter(p)) continue;
      const fileType = (entry.externalFileAttributes >>> 16) & 0o170000;
      if (fileType === 0o120000) skip(p, 'a symbolic link; links are not read');
      else if (!entry.canDecodeFileData()) {
        skip(p, entry.isEncrypted() ? 'encrypted' : `compressed with method ${entry.compressionMethod}, which cannot be read (only stored and deflated)`);
      } else if (entry.uncompressedSize > MAX_PHOTO_BYTES) {
        skip(p, `${formatBytes(entry.uncompressedSize)}, over the ${formatBytes(MAX_PHOTO_BYTES)} limit for a photo`);
      } else if (entries.has(p)) skip(p, 'a second entry with the same name; the first one is used');
      else entries.set(p, entry);
    }
  } catch (err) {
    zip.close();
    throw new DatasetError('dataset_corrupt', `${path} is a damaged zip file: ${errorText(err)}.`, { cause: err });
  }
  let closed = false;
  return {
    path,
    files: [...entries.keys()],
    skipped,
    async read(pathInside) {
      const entry = entries.get(pathInside);
      if (!entry) throw new DatasetError('dataset_unreadable', `${pathInside} is not in ${path}.`);
      if (closed) throw closedError(path, pathInside);
      try {
        const stream = await zip.openReadStreamPromise(entry);
        const chunks: Buffer[] = [];
        let n = 0;
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          chunks.push(chunk);
          n += chunk.length;
        }
        const bytes = Buffer.concat(chunks, n);
        // yauzl checks the sizes; the checksum is ours, so a flipped bit is an error and not a strange photo.
        if (crc32(bytes) !== entry.crc32) throw new Error('its CRC-32 checksum does not match: the zip is damaged');
        return bytes;
      } catch (err) {
        if (closed && !(err instanceof DatasetError)) throw closedError(path, pathInside);
        throw new DatasetError('dataset_unreadable', `Cannot read ${pathInside} from ${path}: ${errorText(err)}.`, { cause: err });
      }
    },
    close() {
      closed = true;
      zip.close(); // yauzl keeps the descriptor open until streams already opened have ended
    },
  };
}

async function openFolderSource(root: string): Promise<SourceReader> {
  const files: string[] = [];
  const skipped: SkippedEntry[] = [];
  const skip = (p: string, reason: string) => skipped.push({ source: root, path: p, reason });
  const walk = async (dir: string, rel: string, depth: number): Promise<void> => {
    let dirents: Dirent[];
    try {
      dirents = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      throw new DatasetError('dataset_unreadable', `Cannot list the folder ${dir}: ${errorText(err)}.`, { cause: err });
    }
    dirents.sort((a, b) => compareKeys(a.name, b.name));
    for (const d of dirents) {
      const p = rel ? `${rel}/${d.name}` : d.name;
      if (isClutter(d.name)) continue;
      if (d.isSymbolicLink()) skip(p, 'a symbolic link; links are not followed');
      else if (d.isDirectory()) {
        if (depth + 1 < MAX_FOLDER_DEPTH) await walk(join(dir, d.name), p, depth + 1);
        else skip(p, 'a folder deeper than the Kaggle layout; not searched');
      } else if (d.isFile()) files.push(p);
      else skip(p, 'not a regular file');
    }
  };
  await walk(root, '', 0);
  let closed = false;
  return {
    path: root,
    files,
    skipped,
    async read(pathInside) {
      if (closed) throw closedError(root, pathInside);
      const full = join(root, ...pathInside.split('/'));
      try {
        // O_NOFOLLOW: a file swapped for a link after the listing is refused, not followed.
        const handle = await openFile(full, constants.O_RDONLY | constants.O_NOFOLLOW);
        try {
          const info = await handle.stat();
          if (!info.isFile()) throw new Error('not a regular file');
          if (info.size > MAX_PHOTO_BYTES) throw new Error(`${formatBytes(info.size)}, over the ${formatBytes(MAX_PHOTO_BYTES)} limit for a photo`);
          return await handle.readFile();
        } finally {
          await handle.close();
        }
      } catch (err) {
        throw new DatasetError('dataset_unreadable', `Cannot read ${full}: ${errorText(err)}.`, { cause: err });
      }
    },
    close() {
      closed = true;
    },
  };
}

async function openSource(path: string): Promise<SourceReader> {
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new DatasetError(
      missing ? 'dataset_missing' : 'dataset_unreadable',
      missing
        ? `No data at ${path}: the file or folder does not exist. Pass a Kaggle zip (train.zip, test.zip) or the folder it unpacks to.`
        : `Cannot open ${path}: ${errorText(err)}.`,
      { cause: err },
    );
  }
  if (info.isDirectory()) return openFolderSource(path);
  if (info.isFile()) return openZipSource(path);
  throw new DatasetError('dataset_unreadable', `${path} is neither a zip file nor a folder.`);
}

/** The name a source gives its keys: the zip's or the folder's own name. */
function sourceName(path: string): string {
  return basename(path) || path;
}

/**
 * Opens one or more sources as one dataset. `kind` 'train' keeps only labelled photos
 * (`cat.N.jpg`, `dog.N.jpg`), 'test' only test photos (`N.jpg`); 'auto' (the default) keeps both.
 * A photo of the other kind is reported in `skipped`, not fatal. Throws a DatasetError for a
 * missing path, a damaged zip, or two sources with the same name (their keys would collide).
 */
export async function openDataset(sources: string | string[], opts: { kind?: DatasetKind } = {}): Promise<Dataset> {
  const kind = opts.kind ?? 'auto';
  const paths = [...new Set([sources].flat().map((p) => resolve(p)))];
  if (!paths.length) {
    throw new DatasetError('dataset_missing', 'No data source given: pass a Kaggle zip (train.zip, test.zip) or the folder it unpacks to.');
  }
  const byName = new Map<string, string>();
  for (const p of paths) {
    const other = byName.get(sourceName(p));
    if (other) {
      throw new DatasetError(
        'dataset_ambiguous',
        `${other} and ${p} have the same name "${sourceName(p)}", so their photos would get the same keys: rename or move one of them.`,
      );
    }
    byName.set(sourceName(p), p);
  }

  const readers: SourceReader[] = [];
  try {
    for (const p of paths) readers.push(await openSource(p));
  } catch (err) {
    for (const r of readers) r.close();
    throw err;
  }

  let closed = false;
  const training: Sample[] = [];
  const test: Sample[] = [];
  const skipped: SkippedEntry[] = [];
  const testKeyById = new Map<number, string>();
  for (const reader of readers) {
    skipped.push(...reader.skipped);
    for (const pathInside of reader.files) {
      const skip = (reason: string) => skipped.push({ source: reader.path, path: pathInside, reason });
      const name = fileName(pathInside);
      const label = labelFromName(name);
      const id = label === null ? idFromName(name) : null;
      if (label === null && id === null) {
        skip(`not a Kaggle photo name (${LAYOUT_HINT})`);
        continue;
      }
      if (kind === 'test' && label !== null) {
        skip('a labelled training photo in a test set');
        continue;
      }
      if (kind === 'train' && id !== null) {
        skip('an unlabelled test photo in a training set');
        continue;
      }
      const key = `${sourceName(reader.path)}:${pathInside}`;
      if (id !== null) {
        const first = testKeyById.get(id);
        if (first !== undefined) {
          skip(`test id ${id} is already taken by ${first}`);
          continue;
        }
        testKeyById.set(id, key);
      }
      const sample: Sample = {
        key,
        source: reader.path,
        name,
        label,
        id,
        read: () => (closed ? Promise.reject(closedError(reader.path, pathInside)) : reader.read(pathInside)),
      };
      (id !== null ? test : training).push(sample);
    }
  }
  training.sort((a, b) => compareKeys(a.key, b.key));
  skipped.sort((a, b) => paths.indexOf(a.source) - paths.indexOf(b.source) || compareKeys(a.path, b.path));
  test.sort((a, b) => a.id! - b.id! || compareKeys(a.key, b.key));

  return {
    sources: paths,
    samples: [...training, ...test],
    skipped,
    async close() {
      if (closed) return;
      closed = true;
      for (const r of readers) r.close();
    },
  };
}

/**
 * Reads a labels file in Kaggle's submission layout, `id,label` with label 1 = dog, 0 = cat
 * (e.g. test_labels.csv). Throws a DatasetError naming the path (and line) when the file is
 * missing, has another header, a malformed row or an id twice.
 */
export async function readLabelsCsv(path: string): Promise<Map<number, Label>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new DatasetError(
      missing ? 'labels_missing' : 'labels_unreadable',
      missing ? `The labels file ${path} does not exist.` : `Cannot read the labels file ${path}: ${errorText(err)}.`,
      { cause: err },
    );
  }
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const header = (lines[0] ?? '').replace(/\s+/g, '').toLowerCase();
  if (header !== 'id,label') {
    throw new DatasetError('labels_invalid', `${path} should start with the header "id,label", not "${(lines[0] ?? '').slice(0, 60)}".`);
  }
  const labels = new Map<number, Label>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (!line.trim()) continue;
    const m = /^\s*(\d+)\s*,\s*([01])(?:\.0*)?\s*$/.exec(line);
    if (!m) {
      throw new DatasetError(
        'labels_invalid',
        `${path} line ${i + 1}: expected "id,label" with label 0 (cat) or 1 (dog), got "${line.slice(0, 60)}".`,
      );
    }
    const id = Number(m[1]);
    if (labels.has(id)) throw new DatasetError('labels_invalid', `${path} line ${i + 1}: id ${id} appears twice.`);
    labels.set(id, m[2] === '1' ? 1 : 0);
  }
  return labels;
}
