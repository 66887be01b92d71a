/** Real photos from ../shared/data/dogs-vs-cats for tests, read straight from Kaggle's zips. */
import { openDataset } from '../../src/train/dataset.ts';
import { requireShared } from './shared.ts';

/**
 * The bytes of the named entries (e.g. 'cat.1.jpg') of a shared zip, or null when the shared data
 * is missing outside CI (the caller skips).
 */
export async function sharedPhotos(zip: string, names: string[]): Promise<Map<string, Buffer> | null> {
  const path = requireShared('data', 'dogs-vs-cats', zip);
  if (!path) return null;
  const ds = await openDataset(path);
  try {
    const out = new Map<string, Buffer>();
    for (const name of names) {
      const s = ds.samples.find((x) => x.name === name || x.name.endsWith(`/${name}`));
      if (!s) throw new Error(`${zip} has no ${name}`);
      out.set(name, await s.read());
    }
    return out;
  } finally {
    await ds.close();
  }
}
