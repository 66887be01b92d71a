import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatasetError } from '../../src/errors.ts';
import { compareKeys, contentHash, idFromName, labelFromName, openDataset, readLabelsCsv, type Dataset } from '../../src/train/dataset.ts';
import { jpegPhoto, makeZip } from '../helpers/datasets.ts';
import { requireShared } from '../helpers/shared.ts';

let dir: string;
const photos: Record<string, Buffer> = {};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'catdog-dataset-'));
  photos.cat1 = await jpegPhoto(40, 30, '#aa3300');
  photos.cat2 = await jpegPhoto(30, 40, '#bb4400');
  photos.cat10 = await jpegPhoto(50, 50, '#cc5500');
  photos.dog2 = await jpegPhoto(60, 20, '#0033aa');
  photos.test1 = await jpegPhoto(20, 20, '#888800');
  photos.test2 = await jpegPhoto(21, 20, '#889900');
  photos.test10 = await jpegPhoto(22, 20, '#88aa00');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeZip(name: string, entries: Parameters<typeof makeZip>[0]): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, makeZip(entries));
  return path;
}

async function withDataset<T>(sources: string | string[], fn: (ds: Dataset) => Promise<T>, kind?: 'train' | 'test' | 'auto'): Promise<T> {
  const ds = await openDataset(sources, { kind });
  try {
    return await fn(ds);
  } finally {
    await ds.close();
  }
}

describe('names', () => {
  it('reads the label from a training photo name, 1 = dog', () => {
    expect(labelFromName('cat.0.jpg')).toBe(0);
    expect(labelFromName('dog.12499.jpg')).toBe(1);
    expect(labelFromName('train/dog.7.jpg')).toBe(1);
    expect(labelFromName('DOG.7.JPEG')).toBe(1);
    for (const bad of ['17.jpg', 'cat.jpg', 'cat.1.png', 'bird.1.jpg', 'cat.x.jpg', 'dogs.1.jpg', 'cat.1.jpg.txt']) expect(labelFromName(bad)).toBeNull();
  });

  it('reads the Kaggle id from a test photo name', () => {
    expect(idFromName('1.jpg')).toBe(1);
    expect(idFromName('test/12500.jpg')).toBe(12500);
    for (const bad of ['cat.1.jpg', 'x1.jpg', '1.png', '1', '-1.jpg', '1.5.jpg']) expect(idFromName(bad)).toBeNull();
  });

  it('orders keys with numbers by value', () => {
    const keys = ['z:train/cat.10.jpg', 'z:train/dog.1.jpg', 'z:train/cat.2.jpg', 'a:train/cat.3.jpg', 'z:train/cat.02.jpg'];
    expect([...keys].sort(compareKeys)).toEqual(['a:train/cat.3.jpg', 'z:train/cat.2.jpg', 'z:train/cat.02.jpg', 'z:train/cat.10.jpg', 'z:train/dog.1.jpg']);
  });

  it('hashes content with SHA-256', () => {
    expect(contentHash(Buffer.from('abc'))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});

describe('a training zip', () => {
  it('lists labelled photos sorted by key, skips clutter and reports strange names', async () => {
    const zip = await writeZip('train.zip', [
      { name: 'train/', directory: true },
      { name: 'train/cat.10.jpg', data: photos.cat10 },
      { name: 'train/dog.2.jpg', data: photos.dog2 },
      { name: 'train/cat.1.jpg', data: photos.cat1 },
      { name: 'train/cat.2.jpg', data: photos.cat2 },
      { name: '__MACOSX/train/._cat.1.jpg', data: 'resource fork' },
      { name: 'train/.DS_Store', data: 'finder' },
      { name: 'train/notes.txt', data: 'hello' },
      { name: 'train/cat.x.jpg', data: photos.cat1 },
      { name: 'train/link.jpg', data: 'cat.1.jpg', symlink: true },
    ]);
    await withDataset(zip, async (ds) => {
      expect(ds.sources).toEqual([zip]);
      expect(ds.samples.map((s) => s.key)).toEqual(['train.zip:train/cat.1.jpg', 'train.zip:train/cat.2.jpg', 'train.zip:train/cat.10.jpg', 'train.zip:train/dog.2.jpg']);
      expect(ds.samples.map((s) => s.label)).toEqual([0, 0, 0, 1]);
      expect(ds.samples.map((s) => s.name)).toEqual(['cat.1.jpg', 'cat.2.jpg', 'cat.10.jpg', 'dog.2.jpg']);
      expect(ds.samples.every((s) => s.id === null && s.source === zip)).toBe(true);
      expect(ds.skipped.map((s) => s.path).sort()).toEqual(['train/cat.x.jpg', 'train/link.jpg', 'train/notes.txt']);
      expect(ds.skipped.find((s) => s.path === 'train/link.jpg')!.reason).toMatch(/symbolic link/);
      expect(ds.skipped.find((s) => s.path === 'train/notes.txt')!.reason).toMatch(/not a Kaggle photo name/);
      expect(await ds.samples[0]!.read()).toEqual(photos.cat1);
      expect(await ds.samples[3]!.read()).toEqual(photos.dog2);
    });
  });

  it('serves many concurrent reads of one zip correctly', async () => {
    const names = ['cat1', 'cat2', 'cat10', 'dog2'] as const;
    const file = { cat1: 'cat.1.jpg', cat2: 'cat.2.jpg', cat10: 'cat.10.jpg', dog2: 'dog.2.jpg' };
    const zip = await writeZip('concurrent.zip', names.map((n) => ({ name: `train/${file[n]}`, data: photos[n] })));
    await withDataset(zip, async (ds) => {
      const expected = new Map(names.map((n) => [file[n], photos[n]!]));
      const reads = Array.from({ length: 12 }, () => ds.samples).flat();
      const got = await Promise.all(reads.map((s) => s.read()));
      got.forEach((bytes, i) => expect(bytes.equals(expected.get(reads[i]!.name)!)).toBe(true));
    });
  });

  it('keeps only the requested kind and reports the rest', async () => {
    const zip = await writeZip('mixed.zip', [
      { name: 'train/cat.1.jpg', data: photos.cat1 },
      { name: 'test/2.jpg', data: photos.test2 },
    ]);
    await withDataset(zip, async (ds) => {
      expect(ds.samples.map((s) => s.key)).toEqual(['mixed.zip:train/cat.1.jpg']);
      expect(ds.skipped).toEqual([{ source: zip, path: 'test/2.jpg', reason: 'an unlabelled test photo in a training set' }]);
    }, 'train');
    await withDataset(zip, async (ds) => {
      expect(ds.samples.map((s) => s.key)).toEqual(['mixed.zip:test/2.jpg']);
      expect(ds.skipped[0]!.reason).toMatch(/labelled training photo in a test set/);
    }, 'test');
    await withDataset(zip, async (ds) => expect(ds.samples.map((s) => [s.label, s.id])).toEqual([[0, null], [null, 2]]));
  });

  it('refuses an entry whose bytes do not match its checksum', async () => {
    const good = makeZip([{ name: 'train/cat.1.jpg', data: photos.cat1 }]);
    const damaged = Buffer.from(good);
    damaged[30 + 'train/cat.1.jpg'.length + 200] ^= 0xff; // a byte inside the stored photo
    const path = join(dir, 'damaged.zip');
    await writeFile(path, damaged);
    await withDataset(path, async (ds) => {
      await expect(ds.samples[0]!.read()).rejects.toThrow(/cat\.1\.jpg.*damaged\.zip.*CRC-32/);
    });
  });

  it('refuses reads after close', async () => {
    const zip = await writeZip('closing.zip', [{ name: 'train/dog.2.jpg', data: photos.dog2 }]);
    const ds = await openDataset(zip);
    await ds.close();
    await ds.close(); // idempotent
    await expect(ds.samples[0]!.read()).rejects.toThrow(/closed/);
  });
});

describe('a test zip', () => {
  it('lists test photos sorted by id, unlabelled', async () => {
    const zip = await writeZip('test.zip', [
      { name: 'test/10.jpg', data: photos.test10 },
      { name: 'test/2.jpg', data: photos.test2 },
      { name: 'test/1.jpg', data: photos.test1 },
    ]);
    await withDataset(zip, async (ds) => {
      expect(ds.samples.map((s) => s.id)).toEqual([1, 2, 10]);
      expect(ds.samples.every((s) => s.label === null)).toBe(true);
      expect(await ds.samples[2]!.read()).toEqual(photos.test10);
    }, 'test');
  });

  it('keeps the first of two photos with the same id across sources', async () => {
    const a = await writeZip('test-a.zip', [{ name: 'test/1.jpg', data: photos.test1 }]);
    const b = await writeZip('test-b.zip', [{ name: 'test/1.jpg', data: photos.test2 }]);
    await withDataset([a, b], async (ds) => {
      expect(ds.samples.map((s) => s.key)).toEqual(['test-a.zip:test/1.jpg']);
      expect(ds.skipped[0]!.reason).toMatch(/test id 1 is already taken by test-a\.zip:test\/1\.jpg/);
    });
  });
});

describe('folders', () => {
  it('reads an unpacked folder with the train/ top folder, without following links', async () => {
    const root = join(dir, 'unpacked');
    await mkdir(join(root, 'train'), { recursive: true });
    await writeFile(join(root, 'train', 'cat.1.jpg'), photos.cat1);
    await writeFile(join(root, 'train', 'dog.2.jpg'), photos.dog2);
    await writeFile(join(root, 'train', '.hidden.jpg'), photos.cat2);
    await writeFile(join(root, 'README.txt'), 'about');
    await symlink(join(root, 'train', 'cat.1.jpg'), join(root, 'train', 'cat.3.jpg'));
    await withDataset(root, async (ds) => {
      expect(ds.samples.map((s) => s.key)).toEqual(['unpacked:train/cat.1.jpg', 'unpacked:train/dog.2.jpg']);
      expect(ds.skipped.map((s) => [s.path, s.reason])).toEqual([
        ['README.txt', expect.stringMatching(/not a Kaggle photo name/)],
        ['train/cat.3.jpg', expect.stringMatching(/symbolic link/)],
      ]);
      expect(await ds.samples[1]!.read()).toEqual(photos.dog2);
    });
  });

  it('reads a folder holding the photos directly, and combines it with a zip', async () => {
    const root = join(dir, 'test-photos');
    await mkdir(root);
    await writeFile(join(root, '2.jpg'), photos.test2);
    await writeFile(join(root, '1.jpg'), photos.test1);
    const zip = await writeZip('more-train.zip', [{ name: 'train/dog.5.jpg', data: photos.dog2 }]);
    await withDataset([root, zip], async (ds) => {
      expect(ds.sources).toEqual([root, zip]);
      expect(ds.samples.map((s) => s.key)).toEqual(['more-train.zip:train/dog.5.jpg', 'test-photos:1.jpg', 'test-photos:2.jpg']);
      expect(await ds.samples[1]!.read()).toEqual(photos.test1);
    });
  });

  it('refuses two sources with the same name, whose keys would collide', async () => {
    await mkdir(join(dir, 'a', 'train'), { recursive: true });
    await mkdir(join(dir, 'b', 'train'), { recursive: true });
    await expect(openDataset([join(dir, 'a', 'train'), join(dir, 'b', 'train')])).rejects.toThrow(/same name "train"/);
  });
});

describe('errors', () => {
  it('names a missing path', async () => {
    const missing = join(dir, 'nowhere', 'train.zip');
    const err = await openDataset(missing).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetError);
    expect((err as DatasetError).code).toBe('dataset_missing');
    expect((err as Error).message).toContain(missing);
  });

  it('says a corrupt or cut-off zip is not readable', async () => {
    const garbage = join(dir, 'garbage.zip');
    await writeFile(garbage, Buffer.from('this is not a zip file at all, just text'));
    await expect(openDataset(garbage)).rejects.toThrow(new RegExp(`${garbage.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not a readable zip file`));

    const whole = makeZip([{ name: 'train/cat.1.jpg', data: photos.cat1 }, { name: 'train/cat.2.jpg', data: photos.cat2 }]);
    const cut = join(dir, 'cut.zip');
    await writeFile(cut, whole.subarray(0, whole.length - 30)); // end record gone
    const err = await openDataset(cut).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetError);
    expect((err as Error).message).toContain(cut);
  });
});

describe('labels file', () => {
  it('reads id,label rows', async () => {
    const path = join(dir, 'labels.csv');
    await writeFile(path, '\uFEFFid,label\r\n1,1\r\n2,0\r\n10,1\r\n');
    expect([...(await readLabelsCsv(path))]).toEqual([[1, 1], [2, 0], [10, 1]]);
  });

  it('names the file and line of a bad row, a duplicate id, a wrong header or a missing file', async () => {
    const bad = join(dir, 'bad.csv');
    await writeFile(bad, 'id,label\n1,1\n2,0.7\n');
    await expect(readLabelsCsv(bad)).rejects.toThrow(/bad\.csv line 3/);
    await writeFile(bad, 'id,label\n1,1\n1,0\n');
    await expect(readLabelsCsv(bad)).rejects.toThrow(/line 3: id 1 appears twice/);
    await writeFile(bad, 'file,dog\n1,1\n');
    await expect(readLabelsCsv(bad)).rejects.toThrow(/header "id,label"/);
    await expect(readLabelsCsv(join(dir, 'none.csv'))).rejects.toThrow(/none\.csv does not exist/);
  });
});

describe('the shared Kaggle data', () => {
  const trainZip = requireShared('data', 'dogs-vs-cats', 'train.zip');
  const smallZip = requireShared('data', 'dogs-vs-cats', 'train-200px.zip');
  const testZip = requireShared('data', 'dogs-vs-cats', 'test.zip');
  const labelsCsv = requireShared('data', 'dogs-vs-cats', 'test_labels.csv');
  const isJpeg = (b: Buffer) => b.length > 100 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;

  it.skipIf(!trainZip)('train.zip: 2,002 labelled photos, 1,001 of each class, readable as JPEG', async () => {
    await withDataset(trainZip!, async (ds) => {
      expect(ds.samples).toHaveLength(2002);
      expect(ds.skipped).toEqual([]);
      expect(ds.samples.filter((s) => s.label === 1)).toHaveLength(1001);
      expect(ds.samples.filter((s) => s.label === 0)).toHaveLength(1001);
      expect(ds.samples[0]!.key).toBe('train.zip:train/cat.0.jpg');
      expect(ds.samples.at(-1)!.key).toBe('train.zip:train/dog.1000.jpg');
      const some = [ds.samples[0]!, ds.samples[777]!, ds.samples[2001]!];
      for (const bytes of await Promise.all(some.map((s) => s.read()))) expect(isJpeg(bytes)).toBe(true);
    }, 'train');
  });

  it.skipIf(!trainZip || !smallZip)('train.zip + train-200px.zip: 12,002 photos with distinct keys', async () => {
    await withDataset([trainZip!, smallZip!], async (ds) => {
      expect(ds.samples).toHaveLength(12002);
      expect(new Set(ds.samples.map((s) => s.key)).size).toBe(12002);
      const small = ds.samples.filter((s) => s.key.startsWith('train-200px.zip:'));
      expect(small).toHaveLength(10000);
      expect(small.filter((s) => s.label === 1)).toHaveLength(5000);
      expect(isJpeg(await small[4321]!.read())).toBe(true);
    }, 'train');
  });

  it.skipIf(!testZip)('test.zip: 1,000 unlabelled photos with ids 1..1000 in order', async () => {
    await withDataset(testZip!, async (ds) => {
      expect(ds.samples.map((s) => s.id)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
      expect(ds.samples.every((s) => s.label === null)).toBe(true);
      expect(isJpeg(await ds.samples[999]!.read())).toBe(true);
    }, 'test');
  });

  it.skipIf(!labelsCsv)('test_labels.csv: 1,000 rows, 500 dogs', async () => {
    const labels = await readLabelsCsv(labelsCsv!);
    expect(labels.size).toBe(1000);
    expect([...labels.values()].filter((l) => l === 1)).toHaveLength(500);
    expect([...labels.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    expect((await readFile(labelsCsv!, 'utf8')).startsWith('id,label')).toBe(true);
  });
});
