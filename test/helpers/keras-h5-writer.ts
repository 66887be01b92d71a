/**
 * Writes Keras HDF5 weight files in Keras 2's `save_weights` layout, for tests: catdog itself only
 * reads them (src/model/weights/keras-h5.ts), the tests write files to read back and to check the
 * reader against, byte for byte where Keras's layout says so.
 */
import { rename, rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import h5wasm from 'h5wasm/node';
import type { Group as H5Group } from 'h5wasm/node';
import { CatdogError, ModelError } from '../../src/errors.ts';
import {
  ensureReady,
  HDF5_OBJECT_HEADER_LIMIT,
  isGroup,
  shortH5Error,
  withThrowingErrors,
  type LayerWeights,
} from '../../src/model/weights/keras-h5.ts';

function utf8Length(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/**
 * Splits a list like numpy's `array_split(data, k)`: the first `n % k` parts get one extra item.
 */
function arraySplit<T>(items: T[], k: number): T[][] {
  const base = Math.floor(items.length / k);
  const extra = items.length % k;
  const out: T[][] = [];
  let at = 0;
  for (let i = 0; i < k; i++) {
    const n = base + (i < extra ? 1 : 0);
    out.push(items.slice(at, at + n));
    at += n;
  }
  return out;
}

/**
 * Writes a name list the way Keras's `save_attributes_to_hdf5_group` does: fixed-length strings
 * (numpy `S<n>`, n = the longest name in bytes), split over `name0`, `name1`, … while any part is
 * over 64512 bytes.
 */
function writeNameList(obj: H5Group, name: string, list: string[]): void {
  const itemSize = Math.max(1, ...list.map(utf8Length));
  if (itemSize > HDF5_OBJECT_HEADER_LIMIT) {
    throw new ModelError('weights_write', `A name in ${name} is ${itemSize} bytes long, over the ${HDF5_OBJECT_HEADER_LIMIT}-byte HDF5 limit.`);
  }
  const ascii = list.every((s) => /^[\x00-\x7f]*$/.test(s));
  const dtype = `${ascii ? 'A' : 'S'}${itemSize}`;
  let k = 1;
  while (arraySplit(list, k).some((c) => c.length * itemSize > HDF5_OBJECT_HEADER_LIMIT)) k++;
  if (k === 1) {
    obj.create_attribute(name, list, [list.length], dtype);
    return;
  }
  arraySplit(list, k).forEach((chunk, i) => obj.create_attribute(`${name}${i}`, chunk, [chunk.length], dtype));
}

function writeEmptyNames(obj: H5Group, name: string): void {
  obj.create_attribute(name, new Float64Array(0), [0], '<d'); // what Keras writes: np.asarray([])
}

/**
 * Writes layers in Keras 2's `save_weights` layout (see the module comment): root attributes
 * `layer_names` (fixed-length strings, split when long), `backend`, `keras_version`; one group per
 * layer with `weight_names`; each weight at `<layer>/<weight name>`, a `/` in the name making
 * intermediate groups. A layer with no weights is written as a weightless layer in its place;
 * `includeWeightless` names more weightless layers, listed first (like `input_1`). The file is
 * written next to `path` and renamed into place when complete.
 */
export async function writeKerasH5(
  path: string,
  layers: LayerWeights[],
  opts: { kerasVersion?: string; includeWeightless?: string[]; backend?: string } = {},
): Promise<void> {
  const all = [...(opts.includeWeightless ?? []).map((layer) => ({ layer, weights: [] as LayerWeights['weights'] })), ...layers];
  const seen = new Set<string>();
  for (const l of all) {
    if (!l.layer || l.layer.includes('/') || l.layer === '.' || l.layer === '..') {
      throw new ModelError('weights_write', `"${l.layer}" cannot be a Keras layer name (empty, or with "/").`);
    }
    if (seen.has(l.layer)) throw new ModelError('weights_write', `Layer "${l.layer}" appears twice; Keras layer names are unique.`);
    seen.add(l.layer);
    const wseen = new Set<string>();
    for (const w of l.weights) {
      const parts = w.name.split('/');
      if (!w.name || parts.some((p) => p === '' || p === '.' || p === '..')) {
        throw new ModelError('weights_write', `Weight name "${w.name}" of layer "${l.layer}" is not a valid relative HDF5 path.`);
      }
      if (wseen.has(w.name)) throw new ModelError('weights_write', `Layer "${l.layer}" has weight "${w.name}" twice.`);
      wseen.add(w.name);
      const n = w.shape.reduce((a, b) => a * b, 1);
      if (!w.shape.every((d) => Number.isInteger(d) && d >= 0) || n !== w.values.length) {
        throw new ModelError(
          'weights_write',
          `Weight "${w.name}" of layer "${l.layer}" has ${w.values.length} values, which does not fit shape [${w.shape.join(', ')}].`,
        );
      }
    }
  }
  const m = await ensureReady();
  const target = resolve(path);
  const tmp = `${target}.tmp-${process.pid}-${Date.now()}`;
  try {
    withThrowingErrors(m, () => {
      const f = new h5wasm.File(tmp, 'w');
      try {
        writeNameList(f, 'layer_names', all.map((l) => l.layer));
        f.create_attribute('backend', opts.backend ?? 'tensorflow');
        f.create_attribute('keras_version', opts.kerasVersion ?? '2.2.4');
        for (const l of all) {
          const g = f.create_group(l.layer);
          if (l.weights.length === 0) {
            writeEmptyNames(g, 'weight_names');
            continue;
          }
          writeNameList(g, 'weight_names', l.weights.map((w) => w.name));
          for (const w of l.weights) {
            const parts = w.name.split('/');
            let parent = g;
            for (const p of parts.slice(0, -1)) {
              const existing = parent.get(p);
              parent = isGroup(existing) ? existing : parent.create_group(p);
            }
            parent.create_dataset({ name: parts[parts.length - 1]!, data: w.values, shape: w.shape, dtype: '<f' });
          }
        }
      } finally {
        f.close();
      }
    });
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    if (err instanceof CatdogError) throw err;
    throw new ModelError('weights_write', `Could not write ${target}: ${shortH5Error(err)}.`, { cause: err });
  }
}
