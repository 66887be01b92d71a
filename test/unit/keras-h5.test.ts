/**
 * The Keras HDF5 reader against real Keras-written files (weight for weight, against the
 * `*.keras_order.txt` listings made with Keras's own load order), the writer (round trip, long
 * `layer_names` split like Keras does), Keras 3 `.weights.h5` files, and files that are not Keras
 * weights at all.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import h5wasm from 'h5wasm/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError } from '../../src/errors.ts';
import {
  HDF5_OBJECT_HEADER_LIMIT,
  kernelKind,
  naturalCompare,
  readKerasH5,
  type LayerWeights,
} from '../../src/model/weights/keras-h5.ts';
import { writeKerasH5 } from '../helpers/keras-h5-writer.ts';
import { requireShared } from '../helpers/shared.ts';

const tmp = mkdtempSync(join(tmpdir(), 'catdog-kerash5-'));

beforeAll(async () => {
  await h5wasm.ready;
});

afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// The listings

interface Listing {
  root: string;
  kerasVersion: string;
  backend: string;
  layerNames: string[];
  layers: { index: number; layer: string; weights: { name: string; dtype: string; shape: number[]; first: number[] }[] }[];
  weightedLayers: number;
  totalScalars: number;
}

function parseListing(text: string): Listing {
  const lines = text.split('\n');
  const head = /^root=(\S+) keras_version=(\S+) backend=(\S+)$/.exec(lines[0]!);
  if (!head) throw new Error(`unexpected first line: ${lines[0]}`);
  const names = /^layer_names \((\d+)\): (\[.*\])$/.exec(lines[1]!);
  if (!names) throw new Error(`unexpected second line: ${lines[1]}`);
  const layerNames = JSON.parse(names[2]!) as string[];
  expect(layerNames).toHaveLength(Number(names[1]));
  const layers: Listing['layers'] = [];
  let weightedLayers = -1;
  let totalScalars = -1;
  for (const line of lines.slice(2)) {
    if (!line.trim()) continue;
    let m = /^#(\d+) (\S+):$/.exec(line);
    if (m) {
      layers.push({ index: Number(m[1]), layer: m[2]!, weights: [] });
      continue;
    }
    m = /^ {4}(\S+) (\S+?)\[([\d,]*)\] first=\[([^\]]*)\]$/.exec(line);
    if (m) {
      layers.at(-1)!.weights.push({
        name: m[1]!,
        dtype: m[2]!,
        shape: m[3] ? m[3].split(',').map(Number) : [],
        first: m[4]!.split(',').map(Number),
      });
      continue;
    }
    m = /^weighted layers=(\d+), total scalars=(\d+)$/.exec(line);
    if (m) {
      weightedLayers = Number(m[1]);
      totalScalars = Number(m[2]);
      continue;
    }
    throw new Error(`unexpected listing line: ${JSON.stringify(line)}`);
  }
  return { root: head[1]!, kerasVersion: head[2]!, backend: head[3]!, layerNames, layers, weightedLayers, totalScalars };
}

/** The listings print 5 significant digits. */
function closeTo5(actual: number, printed: number): boolean {
  return Math.abs(actual - printed) <= 5.001e-5 * Math.abs(printed) + 1e-45;
}

const REAL_FILES = [
  { file: 'fer2013_mini_XCEPTION.102-0.66.hdf5', root: '/model_weights', weighted: 29 },
  { file: 'kotlindl_lenet_batchnorm_weights.h5', root: '/', weighted: 9 },
];

describe('real Keras-written files', () => {
  for (const { file, root, weighted } of REAL_FILES) {
    it(`${file}: layer order, names, shapes and first values match Keras's load order`, async (ctx) => {
      const path = requireShared('reference', 'keras-h5', file);
      const listingPath = requireShared('reference', 'keras-h5', `${file}.keras_order.txt`);
      if (!path || !listingPath) return ctx.skip();
      const listing = parseListing(readFileSync(listingPath, 'utf8'));
      expect(listing.root).toBe(root);
      expect(listing.weightedLayers).toBe(weighted);
      expect(listing.layers).toHaveLength(weighted);

      const f = await readKerasH5(path);
      expect(f.format).toBe('keras2-h5');
      expect(f.kerasVersion).toBe(listing.kerasVersion);
      expect(f.backend).toBe(listing.backend);
      expect(f.layers.map((l) => l.layer)).toEqual(listing.layers.map((l) => l.layer));
      // Weighted layers keep layer_names order (which is not the alphabetical HDF5 key order).
      const weightedInNameOrder = listing.layerNames.filter((n) => f.layers.some((l) => l.layer === n));
      expect(f.layers.map((l) => l.layer)).toEqual(weightedInNameOrder);
      expect(weightedInNameOrder).not.toEqual([...weightedInNameOrder].sort());

      let scalars = 0;
      listing.layers.forEach((expected, i) => {
        const got = f.layers[i]!;
        expect(got.weights.map((w) => w.name), `layer #${i} ${expected.layer}`).toEqual(expected.weights.map((w) => w.name));
        expected.weights.forEach((ew, j) => {
          const w = got.weights[j]!;
          expect(ew.dtype).toBe('<f');
          expect(w.shape, w.name).toEqual(ew.shape);
          expect(w.values).toBeInstanceOf(Float32Array);
          expect(w.values.length).toBe(ew.shape.reduce((a, b) => a * b, 1));
          ew.first.forEach((v, k) => {
            if (!closeTo5(w.values[k]!, v)) throw new Error(`${w.name}[${k}] = ${w.values[k]}, listing says ${v}`);
          });
          scalars += w.values.length;
        });
      });
      expect(scalars).toBe(listing.totalScalars);
    });
  }

  it('mini-Xception: weights resolve through weight_names (prefix differs from the layer name)', async (ctx) => {
    const path = requireShared('reference', 'keras-h5', 'fer2013_mini_XCEPTION.102-0.66.hdf5');
    if (!path) return ctx.skip();
    const f = await readKerasH5(path);
    const conv = f.layers.find((l) => l.layer === 'conv2d_1')!;
    expect(conv.weights.map((w) => w.name)).toEqual(['conv2d_1_1/kernel:0']);
    // The two residual-branch BNs have betas equal to 5 digits; they still come from their own datasets.
    const beta = (layer: string) => f.layers.find((l) => l.layer === layer)!.weights.find((w) => kernelKind(w.name) === 'beta')!.values;
    const a = beta('batch_normalization_12');
    const b = beta('batch_normalization_14');
    expect(a.length).toBe(b.length);
    expect(a.some((x, i) => x !== b[i])).toBe(true);
  });

  it('bytes in memory read the same as the path', async (ctx) => {
    const path = requireShared('reference', 'keras-h5', 'kotlindl_lenet_batchnorm_weights.h5');
    if (!path) return ctx.skip();
    const fromPath = await readKerasH5(path);
    const fromBytes = await readKerasH5(new Uint8Array(readFileSync(path)));
    expect(fromBytes.layers.map((l) => l.layer)).toEqual(fromPath.layers.map((l) => l.layer));
    for (let i = 0; i < fromPath.layers.length; i++) {
      for (let j = 0; j < fromPath.layers[i]!.weights.length; j++) {
        expect(Buffer.from(fromBytes.layers[i]!.weights[j]!.values.buffer).equals(Buffer.from(fromPath.layers[i]!.weights[j]!.values.buffer))).toBe(true);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Writer

function tensor(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 131 + i * 0.37) * (i % 7 === 0 ? 1e-30 : 1));
}

const SAMPLE: LayerWeights[] = [
  {
    layer: 'conv1_conv',
    weights: [
      { name: 'conv1_conv/kernel:0', shape: [3, 3, 3, 4], values: tensor(108, 1) },
      { name: 'conv1_conv/bias:0', shape: [4], values: tensor(4, 2) },
    ],
  },
  {
    layer: 'conv1_bn',
    weights: ['gamma', 'beta', 'moving_mean', 'moving_variance'].map((r, i) => ({ name: `conv1_bn_1/${r}:0`, shape: [4], values: tensor(4, 10 + i) })),
  },
  { layer: 'act', weights: [] },
  {
    layer: 'block1_sepconv1',
    weights: [
      { name: 'block1_sepconv1/depthwise_kernel:0', shape: [3, 3, 4, 1], values: tensor(36, 20) },
      { name: 'block1_sepconv1/pointwise_kernel:0', shape: [1, 1, 4, 8], values: tensor(32, 21) },
    ],
  },
  { layer: 'a_dense', weights: [{ name: 'deep/er/path/kernel', shape: [8, 2], values: tensor(16, 30) }] },
];

describe('writeKerasH5', () => {
  it('writes Keras 2 save_weights layout and reads back bit for bit', async () => {
    const path = join(tmp, 'sample.h5');
    await writeKerasH5(path, SAMPLE, { kerasVersion: '2.2.4', includeWeightless: ['input_1'] });

    const f = new h5wasm.File(path, 'r');
    try {
      const names = f.attrs.layer_names!;
      expect(names.metadata.vlen).toBe(false); // fixed-length strings, like numpy S<n>
      expect(names.metadata.size).toBe('block1_sepconv1'.length);
      expect(names.value).toEqual(['input_1', 'conv1_conv', 'conv1_bn', 'act', 'block1_sepconv1', 'a_dense']);
      expect(f.get_attribute('keras_version', false)).toBe('2.2.4');
      expect(f.get_attribute('backend', false)).toBe('tensorflow');
      const input = f.get('input_1') as InstanceType<typeof h5wasm.Group>;
      const empty = input.attrs.weight_names!;
      expect(empty.value).toBeInstanceOf(Float64Array);
      expect((empty.value as Float64Array).length).toBe(0);
      expect(f.get('conv1_bn/conv1_bn_1/gamma:0')).toBeInstanceOf(h5wasm.Dataset);
      expect(f.get('a_dense/deep/er/path/kernel')).toBeInstanceOf(h5wasm.Dataset);
      expect((f.get('conv1_conv/conv1_conv/kernel:0') as InstanceType<typeof h5wasm.Dataset>).dtype).toBe('<f');
    } finally {
      f.close();
    }

    const back = await readKerasH5(path);
    expect(back.format).toBe('keras2-h5');
    expect(back.kerasVersion).toBe('2.2.4');
    expect(back.backend).toBe('tensorflow');
    const weighted = SAMPLE.filter((l) => l.weights.length);
    expect(back.layers.map((l) => l.layer)).toEqual(weighted.map((l) => l.layer));
    back.layers.forEach((l, i) => {
      const src = weighted[i]!;
      expect(l.weights.map((w) => [w.name, w.shape])).toEqual(src.weights.map((w) => [w.name, w.shape]));
      l.weights.forEach((w, j) => expect(Array.from(w.values)).toEqual(Array.from(src.weights[j]!.values)));
    });
  });

  it('splits a long layer_names over layer_names0, 1, … like Keras, and the reader joins them', async () => {
    const n = 3000;
    const names = Array.from({ length: n }, (_, i) => `stage${Math.floor(i / 100)}_block${i}_a_fairly_long_layer_name`);
    const itemSize = Math.max(...names.map((s) => s.length));
    const layers: LayerWeights[] = names.map((layer, i) => ({
      layer,
      weights: i % 97 === 3 ? [{ name: `${layer}/kernel:0`, shape: [2, 3], values: tensor(6, i) }] : [],
    }));
    const path = join(tmp, 'long.h5');
    await writeKerasH5(path, layers);

    // Keras's rule: the fewest equal parts (numpy array_split) that each fit in 64512 bytes.
    const parts = Math.ceil((n * itemSize) / HDF5_OBJECT_HEADER_LIMIT);
    expect(n * itemSize).toBeGreaterThan(HDF5_OBJECT_HEADER_LIMIT);
    const f = new h5wasm.File(path, 'r');
    let joined: string[] = [];
    try {
      const attrs = Object.keys(f.attrs).filter((a) => a.startsWith('layer_names')).sort(naturalCompare);
      expect(attrs).toEqual(Array.from({ length: parts }, (_, i) => `layer_names${i}`));
      for (const a of attrs) {
        const at = f.attrs[a]!;
        expect(at.metadata.size * at.shape![0]!).toBeLessThanOrEqual(HDF5_OBJECT_HEADER_LIMIT);
        joined = joined.concat(at.value as string[]);
      }
      expect(f.attrs[attrs[0]!]!.shape![0]! - f.attrs[attrs.at(-1)!]!.shape![0]!).toBeLessThanOrEqual(1);
    } finally {
      f.close();
    }
    expect(joined).toEqual(names);

    const back = await readKerasH5(path);
    const expected = layers.filter((l) => l.weights.length);
    expect(expected.length).toBeGreaterThan(20);
    expect(back.layers.map((l) => l.layer)).toEqual(expected.map((l) => l.layer));
    expect(Array.from(back.layers.at(-1)!.weights[0]!.values)).toEqual(Array.from(expected.at(-1)!.weights[0]!.values));
  });

  it('refuses inputs that cannot be a Keras file, and leaves nothing behind', async () => {
    const path = join(tmp, 'bad.h5');
    await expect(writeKerasH5(path, [{ layer: 'a', weights: [{ name: 'a/kernel:0', shape: [2, 2], values: new Float32Array(3) }] }])).rejects.toThrow(
      /has 3 values, which does not fit shape \[2, 2\]/,
    );
    await expect(writeKerasH5(path, [{ layer: 'a', weights: [] }, { layer: 'a', weights: [] }])).rejects.toThrow(/appears twice/);
    await expect(writeKerasH5(path, [{ layer: 'a/b', weights: [] }])).rejects.toBeInstanceOf(ModelError);
    await expect(readKerasH5(path)).rejects.toMatchObject({ code: 'weights_missing' });
  });
});

// ---------------------------------------------------------------------------------------------
// Keras 3 .weights.h5

type H5Group = InstanceType<typeof h5wasm.Group>;

function addVars(parent: H5Group, key: string, vars: Float32Array[] | null, opts: { name?: string; ints?: boolean } = {}): H5Group {
  const g = parent.create_group(key);
  const v = g.create_group('vars');
  if (opts.name) v.create_attribute('name', opts.name);
  (vars ?? []).forEach((x, i) => v.create_dataset({ name: String(i), data: x, shape: [x.length], dtype: '<f' }));
  if (opts.ints) v.create_dataset({ name: '0', data: new Uint32Array([7, 1234]), shape: [2], dtype: '<I' });
  return g;
}

describe('Keras 3 .weights.h5', () => {
  it('h5py-style file (no creation order): layers in natural key order, weights 0..N in numeric order', async () => {
    const path = join(tmp, 'model.weights.h5');
    const f = new h5wasm.File(path, 'w');
    f.create_group('vars');
    const layers = f.create_group('layers');
    addVars(layers, 'conv2d', [tensor(27, 1), tensor(3, 2)]);
    addVars(layers, 'batch_normalization', [tensor(3, 3), tensor(3, 4), tensor(3, 5), tensor(3, 6)]);
    addVars(layers, 'conv2d_1', [tensor(9, 7)], { name: 'block1_conv' });
    addVars(layers, 'conv2d_2', [tensor(9, 8)]);
    addVars(layers, 'conv2d_10', [tensor(9, 9)]);
    addVars(layers, 'activation', null);
    addVars(layers, 'dropout', null, { ints: true }); // a seed-generator-like integer state: not a weight
    addVars(layers, 'many', Array.from({ length: 12 }, (_, i) => new Float32Array([i])));
    const functional = addVars(layers, 'functional', null);
    addVars(functional.create_group('layers'), 'dense', [tensor(4, 11), tensor(2, 12)]);
    const opt = f.create_group('optimizer');
    opt.create_group('vars').create_dataset({ name: '0', data: new Float32Array([0.001]), shape: [1], dtype: '<f' });
    f.close();

    const back = await readKerasH5(path);
    expect(back.format).toBe('keras3-weights-h5');
    expect(back.kerasVersion).toBeNull();
    expect(back.backend).toBeNull();
    expect(back.layers.map((l) => l.layer)).toEqual([
      'batch_normalization',
      'conv2d',
      'block1_conv', // conv2d_1, named by its vars@name
      'conv2d_2',
      'conv2d_10',
      'functional/dense',
      'many',
    ]);
    const bn = back.layers[0]!;
    expect(bn.weights.map((w) => w.name)).toEqual(['0', '1', '2', '3']);
    expect(Array.from(bn.weights[2]!.values)).toEqual(Array.from(tensor(3, 5)));
    expect(back.layers[1]!.weights[0]!.shape).toEqual([27]);
    const many = back.layers.at(-1)!;
    expect(many.weights.map((w) => w.name)).toEqual(Array.from({ length: 12 }, (_, i) => String(i)));
    expect(many.weights.map((w) => w.values[0])).toEqual(Array.from({ length: 12 }, (_, i) => i));
  });

  it('a file that tracks creation order is read in that order', async () => {
    const path = join(tmp, 'ordered.weights.h5');
    const f = new h5wasm.File(path, 'w', { track_order: true });
    f.create_group('vars', true);
    const layers = f.create_group('layers', true);
    for (const [key, n] of [['conv2d', 1], ['batch_normalization', 2], ['conv2d_1', 3], ['dense', 4]] as const) {
      addVars(layers, key, [tensor(n, n)]);
    }
    f.close();
    const back = await readKerasH5(path);
    expect(back.layers.map((l) => l.layer)).toEqual(['conv2d', 'batch_normalization', 'conv2d_1', 'dense']);
  });
});

// ---------------------------------------------------------------------------------------------
// Not Keras weights

describe('files that are not Keras weights', () => {
  it('a text file, an HTML page, a zip, an empty file: ModelError saying what it is', async () => {
    const text = join(tmp, 'notes.h5');
    writeFileSync(text, 'these are not the weights you are looking for\n'.repeat(40));
    await expect(readKerasH5(text)).rejects.toThrow(ModelError);
    await expect(readKerasH5(text)).rejects.toThrow(`${text} is not an HDF5 file: it does not start with the HDF5 signature.`);
    await expect(readKerasH5(new TextEncoder().encode('<!DOCTYPE html><html>Access denied</html>'))).rejects.toThrow(/HTML\/XML page/);
    await expect(readKerasH5(Uint8Array.from([0x50, 0x4b, 0x03, 0x04, 1, 2, 3, 4]))).rejects.toThrow(/zip archive/);
    await expect(readKerasH5(new Uint8Array(0))).rejects.toMatchObject({ code: 'weights_format', message: expect.stringMatching(/is empty/) });
    await expect(readKerasH5(join(tmp, 'nope.h5'))).rejects.toMatchObject({ code: 'weights_missing' });
  });

  it('a truncated HDF5 file: ModelError, not a crash', async (ctx) => {
    const path = requireShared('reference', 'keras-h5', 'kotlindl_lenet_batchnorm_weights.h5');
    if (!path) return ctx.skip();
    const cut = readFileSync(path).subarray(0, 4096);
    const err = await readKerasH5(new Uint8Array(cut)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect((err as ModelError).message).toMatch(/^The weight file (looks like HDF5 but cannot be opened|could not be read) \(.+\); it is probably (truncated or )?damaged: get it again\.$/);
  });

  it('HDF5 without either Keras layout', async () => {
    const path = join(tmp, 'other.h5');
    const f = new h5wasm.File(path, 'w');
    f.create_group('entry').create_dataset({ name: 'data', data: new Float32Array([1, 2, 3]), shape: [3], dtype: '<f' });
    f.close();
    await expect(readKerasH5(path)).rejects.toThrow(
      `${path} is an HDF5 file but not Keras weights: it has no layer_names attribute (at / or /model_weights) and no Keras 3 /layers + /vars groups (top level holds: entry).`,
    );
  });
});

describe('kernelKind', () => {
  it('maps stored weight names to roles', () => {
    expect(kernelKind('conv1_conv/kernel:0')).toBe('kernel');
    expect(kernelKind('dense/kernel')).toBe('kernel');
    expect(kernelKind('conv2d_1_1/bias:0')).toBe('bias');
    expect(kernelKind('bn/moving_mean:0')).toBe('moving_mean');
    expect(kernelKind('batch_normalization_1_1/moving_variance:0')).toBe('moving_variance');
    expect(kernelKind('bn/gamma:0')).toBe('gamma');
    expect(kernelKind('bn/beta')).toBe('beta');
    expect(kernelKind('block1_sepconv1/depthwise_kernel:0')).toBe('depthwise_kernel');
    expect(kernelKind('block1_sepconv1/pointwise_kernel:0')).toBe('pointwise_kernel');
    expect(kernelKind('0')).toBeNull();
    expect(kernelKind('optimizer/iterations:0')).toBeNull();
  });

  it('natural key order', () => {
    expect(['conv2d_10', 'conv2d_2', 'conv2d', 'conv2d_1'].sort(naturalCompare)).toEqual(['conv2d', 'conv2d_1', 'conv2d_2', 'conv2d_10']);
  });
});
