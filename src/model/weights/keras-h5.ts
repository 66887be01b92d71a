/**
 * Keras HDF5 weight files, read with h5wasm (the tests write them with test/helpers/keras-h5-writer.ts).
 *
 * Two layouts are read:
 *
 * - **Keras 2 / legacy `.h5`** (`model.save_weights('x.h5')`, `model.save('x.h5')`, Keras's official
 *   ImageNet files). The weights group is the file root, or `/model_weights` for `model.save`. Its
 *   `layer_names` attribute lists every layer in model order (possibly split over `layer_names0`,
 *   `layer_names1`, … when it is longer than 64512 bytes). Each layer group has a `weight_names`
 *   attribute (an empty float64 array for weightless layers) whose entries are dataset paths
 *   *relative to the layer group*; their prefix may differ from the layer name
 *   (`conv2d_1/conv2d_1_1/kernel:0`), so paths are never built from the layer name. The HDF5 key
 *   listing is alphabetical and is never used for order. Layers are returned in `layer_names` order,
 *   weightless ones left out: the order Keras's `load_weights` zips them with a model.
 *
 * - **Keras 3 `.weights.h5`** (`model.save_weights('x.weights.h5')`, `model.weights.h5` inside a
 *   `.keras` zip): root groups `/layers` and `/vars`, each layer at `/layers/<key>/vars/0..N`, where
 *   `<key>` is the snake_case class name plus a per-class counter (`conv2d`, `conv2d_1`, …), not the
 *   layer name. There are no names for the weights, so this format is **matched by order only**:
 *   weights are named `0`, `1`, … and `layer` is the group key (nested layers as `outer/inner`), or
 *   the `name` attribute of the `vars` group when the writer stored one. Layers come in the file's
 *   creation order when the file tracks it; otherwise (h5py's default) the keys are sorted
 *   naturally (`conv2d`, `conv2d_1`, `conv2d_2`, …, `conv2d_10`), which is model order *within* each
 *   class but not across classes: Keras itself matches these files by key, with the model at hand.
 *   Integer datasets (seed-generator states, counters) are not weights and are left out.
 *
 * Values are returned as float32 (float64 and integer data are converted; float16 is refused).
 */
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import h5wasm from 'h5wasm/node';
import type { Dataset as H5Dataset, Group as H5Group, Metadata, OutputData } from 'h5wasm/node';
import { CatdogError, ModelError } from '../../errors.ts';
import { weightRole, type WeightRole } from './types.ts';

export interface LayerWeights {
  layer: string;
  weights: { name: string; shape: number[]; values: Float32Array }[];
}

export interface KerasWeightFile {
  format: 'keras2-h5' | 'keras3-weights-h5';
  kerasVersion: string | null;
  backend: string | null;
  layers: LayerWeights[];
}

/** Keras (h5py) keeps each attribute under this many bytes and splits longer name lists. */
export const HDF5_OBJECT_HEADER_LIMIT = 64512;

const HDF5_SIGNATURE = Uint8Array.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);
const H5T_INTEGER = 0;
const H5T_FLOAT = 1;

/** Maps a stored weight name (`conv1_conv/kernel:0`, `dense/kernel`, `bn/moving_mean:0`) to its role. */
export function kernelKind(name: string): WeightRole | null {
  return weightRole(name);
}

// ---------------------------------------------------------------------------------------------
// h5wasm plumbing

let readyPromise: Promise<void> | null = null;
type H5Module = Awaited<typeof h5wasm.ready>;
let h5module: H5Module | null = null;

/** Shared with the test writer (test/helpers/keras-h5-writer.ts). */
export async function ensureReady(): Promise<H5Module> {
  readyPromise ??= h5wasm.ready.then((m) => {
    h5module = m;
  });
  await readyPromise;
  return h5module!;
}

/**
 * Runs synchronous h5wasm work with HDF5's error handler switched to "throw": by default the
 * library prints an error stack to stderr and carries on (a failed open returns id -1, a failed
 * dataset creation is silently skipped). The handler is global, so it is restored afterwards.
 */
/** Shared with the test writer (test/helpers/keras-h5-writer.ts). */
export function withThrowingErrors<T>(m: H5Module, fn: () => T): T {
  m.activate_throwing_error_handler();
  try {
    return fn();
  } finally {
    m.deactivate_throwing_error_handler();
  }
}

/** The gist of an HDF5 error stack (they run to dozens of lines): its last "minor:" line, else its first line. */
/** Shared with the test writer (test/helpers/keras-h5-writer.ts). */
export function shortH5Error(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  const minor = lines.filter((l) => l.startsWith('minor:')).pop();
  return minor ? minor.slice('minor:'.length).trim() : (lines[0] ?? text).replace(/^HDF5-DIAG: /, '');
}

// ---------------------------------------------------------------------------------------------
// Recognising the file

function hasSignatureAt(bytes: Uint8Array, offset: number): boolean {
  if (offset + HDF5_SIGNATURE.length > bytes.length) return false;
  for (let i = 0; i < HDF5_SIGNATURE.length; i++) if (bytes[offset + i] !== HDF5_SIGNATURE[i]) return false;
  return true;
}

/** Offsets where HDF5 may place its superblock: 0, 512, 1024, 2048, … (after a user block). */
function superblockOffsets(size: number): number[] {
  const out = [0];
  for (let o = 512; o + HDF5_SIGNATURE.length <= size; o *= 2) out.push(o);
  return out;
}

/** Says what a non-HDF5 file looks like, so the message helps. `head` = the first bytes. */
function describeNotHdf5(label: string, head: Uint8Array, size: number): ModelError {
  if (size === 0) return new ModelError('weights_format', `${label} is empty (0 bytes), not a Keras weight file.`);
  const text = new TextDecoder('latin1').decode(head.subarray(0, 64)).trimStart().toLowerCase();
  let what = 'it does not start with the HDF5 signature';
  if (head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) {
    what = 'it is a zip archive (a `.keras` model?); extract `model.weights.h5` from it and use that';
  } else if (text.startsWith('version https://git-lfs')) {
    what = 'it is a Git LFS pointer, not the file itself; run `git lfs pull` or download the file again';
  } else if (text.startsWith('<!doctype') || text.startsWith('<html') || text.startsWith('<?xml') || text.startsWith('<')) {
    what = 'it is an HTML/XML page (an error page saved by a failed download?)';
  } else if (text.startsWith('{') || text.startsWith('[')) {
    what = 'it is JSON (a TF.js model.json? give its folder instead)';
  }
  return new ModelError('weights_format', `${label} is not an HDF5 file: ${what}.`);
}

function checkSignature(bytes: Uint8Array, label: string): void {
  if (superblockOffsets(bytes.length).some((o) => hasSignatureAt(bytes, o))) return;
  throw describeNotHdf5(label, bytes.subarray(0, 64), bytes.length);
}

async function checkFileSignature(path: string): Promise<void> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ModelError('weights_missing', `No Keras weight file at ${path}.`, { cause: err });
    if (code === 'EISDIR') throw new ModelError('weights_format', `${path} is a folder, not a Keras .h5 file.`, { cause: err });
    throw new ModelError('weights_read', `Cannot open ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const { size } = await fh.stat();
    const head = new Uint8Array(Math.min(64, size));
    await fh.read(head, 0, head.length, 0);
    for (const o of superblockOffsets(size)) {
      const probe = new Uint8Array(HDF5_SIGNATURE.length);
      await fh.read(probe, 0, probe.length, o);
      if (hasSignatureAt(probe, 0)) return;
    }
    throw describeNotHdf5(path, head, size);
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Reading helpers

/** Shared with the test writer (test/helpers/keras-h5-writer.ts). */
export function isGroup(e: unknown): e is H5Group {
  return e instanceof h5wasm.Group;
}

function isDataset(e: unknown): e is H5Dataset {
  return e instanceof h5wasm.Dataset;
}

/** An attribute (or dataset value) as a list of strings: fixed-length or vlen; an empty numeric array is []. */
function asStringList(v: OutputData | null, where: string): string[] {
  if (v === null || v === undefined) return [];
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) {
    return v.map((s) => {
      if (typeof s !== 'string') throw new ModelError('weights_format', `${where} should hold names (strings), but holds ${typeof s} values.`);
      return s;
    });
  }
  if (ArrayBuffer.isView(v) && (v as { length: number }).length === 0) return []; // Keras writes np.asarray([]) (float64) for "no names"
  throw new ModelError('weights_format', `${where} should hold names (strings), but holds numbers.`);
}

function attrNames(obj: H5Group): Set<string> {
  return new Set(Object.keys(obj.attrs));
}

/**
 * Reads a name-list attribute the way Keras's `load_attributes_from_hdf5_group` does: `name`, or,
 * when absent, `name0`, `name1`, … concatenated. Null when neither is there.
 */
function readNameList(obj: H5Group, name: string): string[] | null {
  const names = attrNames(obj);
  if (names.has(name)) return asStringList(obj.get_attribute(name, false), `Attribute ${name} of ${obj.path}`);
  if (!names.has(`${name}0`)) return null;
  const out: string[] = [];
  for (let i = 0; names.has(`${name}${i}`); i++) {
    out.push(...asStringList(obj.get_attribute(`${name}${i}`, false), `Attribute ${name}${i} of ${obj.path}`));
  }
  return out;
}

function readStringAttr(obj: H5Group, name: string): string | null {
  if (!attrNames(obj).has(name)) return null;
  const v = obj.get_attribute(name, false);
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.length === 1 && typeof v[0] === 'string') return v[0];
  if (v instanceof Uint8Array) return new TextDecoder().decode(v);
  return null;
}

function swapBytes(view: ArrayBufferView, size: number): void {
  const b = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  for (let i = 0; i < b.length; i += size) {
    for (let j = 0, k = size - 1; j < k; j++, k--) {
      const t = b[i + j]!;
      b[i + j] = b[i + k]!;
      b[i + k] = t;
    }
  }
}

/** Reads a numeric dataset as float32 with its shape. */
function readTensor(ds: H5Dataset, where: string): { shape: number[]; values: Float32Array } {
  const meta: Metadata = ds.metadata;
  if (meta.type !== H5T_FLOAT && meta.type !== H5T_INTEGER) {
    throw new ModelError('weights_format', `${where} is not numeric data (HDF5 type class ${meta.type}); it cannot be a weight.`);
  }
  if (meta.type === H5T_FLOAT && meta.size !== 4 && meta.size !== 8) {
    throw new ModelError(
      'weights_format',
      `${where} holds ${meta.size * 8}-bit floats, which this reader does not support; save the weights as float32.`,
    );
  }
  const shape = (meta.shape ?? []).map(Number);
  if (meta.shape === null) throw new ModelError('weights_format', `${where} is an empty dataset (no dataspace); it cannot be a weight.`);
  let raw: OutputData | null;
  try {
    raw = ds.value;
  } catch (err) {
    throw new ModelError('weights_read', `Could not read ${where}: ${shortH5Error(err)}.`, { cause: err });
  }
  if (!ArrayBuffer.isView(raw)) throw new ModelError('weights_format', `${where} did not read as a numeric array.`);
  if (!meta.littleEndian && meta.size > 1) swapBytes(raw, meta.size); // h5wasm hands back the file's bytes as they are
  let values: Float32Array;
  if (raw instanceof Float32Array) values = raw;
  else if (raw instanceof BigInt64Array || raw instanceof BigUint64Array) values = Float32Array.from(raw, (x) => Number(x));
  else values = Float32Array.from(raw as unknown as ArrayLike<number>);
  const expected = shape.reduce((a, b) => a * b, 1);
  if (values.length !== expected) {
    throw new ModelError('weights_format', `${where} has ${values.length} values but its shape [${shape.join(', ')}] needs ${expected}.`);
  }
  return { shape, values };
}

// ---------------------------------------------------------------------------------------------
// Keras 2 layout

/** The group holding `layer_names`: the root (save_weights) or /model_weights (model.save). */
function findKeras2Group(f: H5Group): H5Group | null {
  const hasNames = (g: H5Group) => {
    const a = attrNames(g);
    return a.has('layer_names') || a.has('layer_names0');
  };
  if (hasNames(f)) return f;
  const mw = f.get('model_weights');
  if (isGroup(mw) && hasNames(mw)) return mw;
  return null;
}

function readKeras2(f: H5Group, g: H5Group, label: string): KerasWeightFile {
  const layerNames = readNameList(g, 'layer_names') ?? [];
  const layers: LayerWeights[] = [];
  for (const layerName of layerNames) {
    const lg = g.get(layerName);
    if (!isGroup(lg)) {
      throw new ModelError(
        'weights_format',
        `${label} lists layer "${layerName}" in layer_names but has no group ${g.path === '/' ? '' : g.path}/${layerName}; the file is incomplete or damaged.`,
      );
    }
    const weightNames = readNameList(lg, 'weight_names');
    if (weightNames === null) {
      throw new ModelError('weights_format', `${label}: layer group ${lg.path} has no weight_names attribute, so it is not in Keras's layout.`);
    }
    if (weightNames.length === 0) continue;
    const weights = weightNames.map((wn) => {
      const ds = lg.get(wn);
      if (!isDataset(ds)) {
        throw new ModelError(
          'weights_format',
          `${label}: layer "${layerName}" lists weight "${wn}" but ${lg.path}/${wn} is ${ds ? 'not a dataset' : 'missing'}; the file is incomplete or damaged.`,
        );
      }
      return { name: wn, ...readTensor(ds, `${label}: ${ds.path}`) };
    });
    layers.push({ layer: layerName, weights });
  }
  return {
    format: 'keras2-h5',
    kerasVersion: readStringAttr(g, 'keras_version') ?? readStringAttr(f, 'keras_version'),
    backend: readStringAttr(g, 'backend') ?? readStringAttr(f, 'backend'),
    layers,
  };
}

// ---------------------------------------------------------------------------------------------
// Keras 3 layout

/** Natural order: `conv2d` < `conv2d_1` < `conv2d_2` < `conv2d_10`; `0` < `1` < `10`. */
export function naturalCompare(a: string, b: string): number {
  const ra = a.match(/\d+|\D+/g) ?? [];
  const rb = b.match(/\d+|\D+/g) ?? [];
  for (let i = 0; i < Math.min(ra.length, rb.length); i++) {
    const x = ra[i]!;
    const y = rb[i]!;
    if (x === y) continue;
    const nx = /^\d/.test(x);
    const ny = /^\d/.test(y);
    if (nx && ny) return Number(x) - Number(y) || x.length - y.length;
    return x < y ? -1 : 1;
  }
  return ra.length - rb.length;
}

/**
 * Child keys in the file's order: creation order when the group tracks it (h5wasm lists that
 * order then), else h5py's default name order, which is re-sorted naturally.
 */
function orderedKeys(g: H5Group): string[] {
  const keys = g.keys();
  const byName = [...keys].sort();
  const isNameOrder = keys.every((k, i) => k === byName[i]);
  return isNameOrder ? [...keys].sort(naturalCompare) : keys;
}

const CONTAINERS = new Set(['layers', '_layer_checkpoint_dependencies']);

/**
 * A saveable's children in Keras's `_walk_saveable` order: `layers` first, then attributes by
 * plain name order (Python's `sorted(dir(obj))`) with private (`_x`) ones last.
 */
function walkOrder(keys: string[]): string[] {
  const key = (k: string) => (k.startsWith('_') ? `~${k}` : k);
  const first = keys.filter((k) => CONTAINERS.has(k));
  const rest = keys.filter((k) => !CONTAINERS.has(k)).sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  return [...first, ...rest];
}

function readKeras3(f: H5Group, label: string): KerasWeightFile {
  const layers: LayerWeights[] = [];
  const emit = (vars: H5Group, name: string) => {
    const weights: LayerWeights['weights'] = [];
    const keys = vars.keys().filter((k) => /^\d+$/.test(k)).sort((a, b) => Number(a) - Number(b));
    for (const k of keys) {
      const ds = vars.get(k);
      if (!isDataset(ds)) continue;
      if (ds.metadata.type === H5T_INTEGER) continue; // seed-generator states and counters, not weights
      weights.push({ name: k, ...readTensor(ds, `${label}: ${ds.path}`) });
    }
    if (weights.length === 0) return;
    layers.push({ layer: readStringAttr(vars, 'name') ?? name, weights });
  };
  const join2 = (a: string, b: string) => (a ? `${a}/${b}` : b);
  // A group with a `vars` subgroup is a saveable (layer, sub-layer); one without is a container
  // (a list of layers, keyed by class name + counter).
  const visitSaveable = (g: H5Group, name: string) => {
    const vars = g.get('vars');
    if (isGroup(vars)) emit(vars, name);
    for (const k of walkOrder(g.keys().filter((k) => k !== 'vars'))) {
      const child = g.get(k);
      if (!isGroup(child)) continue;
      if (CONTAINERS.has(k)) visitContainer(child, name);
      else if (isGroup(child.get('vars'))) visitSaveable(child, join2(name, k));
      else visitContainer(child, join2(name, k));
    }
  };
  const visitContainer = (g: H5Group, name: string) => {
    for (const k of orderedKeys(g)) {
      const child = g.get(k);
      if (isGroup(child)) visitSaveable(child, join2(name, k));
    }
  };
  const rootVars = f.get('vars');
  if (isGroup(rootVars)) emit(rootVars, 'model');
  for (const top of CONTAINERS) {
    const g = f.get(top);
    if (isGroup(g)) visitContainer(g, '');
  }
  return { format: 'keras3-weights-h5', kerasVersion: null, backend: null, layers };
}

function isKeras3(f: H5Group): boolean {
  return isGroup(f.get('vars')) && (isGroup(f.get('layers')) || isGroup(f.get('_layer_checkpoint_dependencies')));
}

// ---------------------------------------------------------------------------------------------
// Public API

/**
 * Reads a Keras weight file (see the module comment for the two layouts). Throws ModelError when
 * the input is not HDF5, or is HDF5 without either layout, or is damaged.
 */
export async function readKerasH5(pathOrBytes: string | Uint8Array): Promise<KerasWeightFile> {
  const m = await ensureReady();
  let path: string;
  let label: string;
  let cleanup: string | null = null;
  if (typeof pathOrBytes === 'string') {
    path = resolve(pathOrBytes);
    label = path;
    await checkFileSignature(path);
  } else {
    label = 'The weight file';
    checkSignature(pathOrBytes, label);
    // h5wasm's node build reads through the host file system (NODERAWFS), so bytes go to a temp file.
    cleanup = await mkdtemp(join(tmpdir(), 'catdog-h5read-'));
    path = join(cleanup, 'weights.h5');
    await writeFile(path, pathOrBytes);
  }
  try {
    return withThrowingErrors(m, () => {
      let f: InstanceType<typeof h5wasm.File>;
      try {
        f = new h5wasm.File(path, 'r');
      } catch (err) {
        throw new ModelError(
          'weights_read',
          `${label} looks like HDF5 but cannot be opened (${shortH5Error(err)}); it is probably truncated or damaged: get it again.`,
          { cause: err },
        );
      }
      if (f.file_id < 0n) throw new ModelError('weights_read', `${label} looks like HDF5 but cannot be opened; it is probably truncated or damaged: get it again.`);
      try {
        const g = findKeras2Group(f);
        if (g) return readKeras2(f, g, label);
        if (isKeras3(f)) return readKeras3(f, label);
        const top = f.keys().slice(0, 8).join(', ') || 'nothing';
        throw new ModelError(
          'weights_format',
          `${label} is an HDF5 file but not Keras weights: it has no layer_names attribute (at / or /model_weights) and no Keras 3 /layers + /vars groups (top level holds: ${top}).`,
        );
      } catch (err) {
        if (err instanceof CatdogError) throw err;
        throw new ModelError('weights_read', `${label} could not be read (${shortH5Error(err)}); it is probably damaged: get it again.`, { cause: err });
      } finally {
        f.close();
      }
    });
  } finally {
    if (cleanup) await rm(cleanup, { recursive: true, force: true });
  }
}
