/**
 * Copies a few real Kaggle photos for the container test out of train.zip (scripts/container-test.sh
 * passes ../shared/data/dogs-vs-cats/train.zip, or the one under CATDOG_SHARED): `predict` gets
 * cat.N.jpg and dog.N.jpg for N in [0, 3) (the Containerfile's test stage and the web checks),
 * `train` gets N in [100, 120) (40 photos for a small training run inside the image).
 * Usage: node --import tsx scripts/container-photos.ts <train.zip> <predict dir> <train dir>
 */
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openDataset } from '../src/train/dataset.ts';

const [zip, predictDir, trainDir] = process.argv.slice(2);
if (!zip || !predictDir || !trainDir) {
  process.stderr.write('usage: container-photos.ts <train.zip> <predict dir> <train dir>\n');
  process.exit(2);
}
if (!existsSync(zip)) {
  process.stderr.write(`container-photos: ${zip} is missing (the Kaggle photos the container test classifies)\n`);
  process.exit(1);
}
const ranges: [string, number, number][] = [
  [predictDir, 0, 3],
  [trainDir, 100, 120],
];
for (const [dir] of ranges) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
}
const ds = await openDataset(zip);
try {
  for (const s of ds.samples) {
    const m = /^(?:cat|dog)\.(\d+)\.jpg$/.exec(s.name);
    if (!m) continue;
    const n = Number(m[1]);
    for (const [dir, from, to] of ranges) if (n >= from && n < to) writeFileSync(join(dir, s.name), await s.read());
  }
} finally {
  await ds.close();
}
for (const [dir, from, to] of ranges) {
  const got = readdirSync(dir).length;
  if (got !== 2 * (to - from)) {
    process.stderr.write(`container-photos: ${dir} has ${got} photos, expected ${2 * (to - from)}\n`);
    process.exit(1);
  }
  process.stderr.write(`container-photos: ${got} photos in ${dir}\n`);
}
