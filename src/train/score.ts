/**
 * `catdog score`: the active head on a Kaggle test set → submission.csv (`id,label`, one row per
 * photo, sorted by id, label = P(dog)). With labels: log loss, accuracy, confusion matrix and
 * a contact sheet of the worst errors. Features go through the same cache as training.
 */
import { writeFile } from 'node:fs/promises';
import { CatdogError } from '../errors.ts';
import type { Classifier } from '../model/classifier.ts';
import { contactSheetPng } from '../report/contact-sheet.ts';
import { openDataset, readLabelsCsv } from './dataset.ts';
import { extractInto, fusedFromStore, imagenetFromStore, openFeatureStore, type ExtractProgress } from './features.ts';
import { accuracy, confusion, logLoss, worstErrors, type Confusion } from './metrics.ts';

export interface ScoreOptions {
  source: string | string[];
  classifier: Classifier;
  cacheDir: string;
  out: string;
  labels?: string;
  /** Contact sheet of the worst errors (with labels). */
  worstPng?: string;
  worstN?: number;
  signal?: AbortSignal;
  onProgress?: (p: ExtractProgress) => void;
}

export interface ScoreResult {
  n: number;
  failures: { key: string; reason: string }[];
  msPerImage: number;
  logloss?: number;
  accuracy?: number;
  confusion?: Confusion;
  worst?: { id: number; label: number; dog: number }[];
  /** Rows written: id and P(dog). */
  rows: { id: number; dog: number }[];
}

/** Whether a scored photo was answered wrong (P(dog) on the wrong side of 0.5). */
export const answeredWrong = (w: { label: number; dog: number }): boolean => (w.dog >= 0.5 ? 1 : 0) !== w.label;

/**
 * The sheet shows the highest-loss photos, which are errors only when answered wrong: the title
 * says how many of them were, and each caption says which.
 */
export function worstTitle(worst: readonly { label: number; dog: number }[]): string {
  const wrong = worst.filter(answeredWrong).length;
  return `The ${worst.length} highest-loss photos: ${wrong} answered wrong${wrong < worst.length ? `, ${worst.length - wrong} right but least sure` : ''}`;
}

export function worstCaption(w: { id: number; label: number; dog: number }): string[] {
  return [`${w.id}.jpg: ${w.label ? 'dog' : 'cat'}`, `p(dog) = ${w.dog.toFixed(3)}`, answeredWrong(w) ? `WRONG: answered ${w.dog >= 0.5 ? 'dog' : 'cat'}` : 'right'];
}

/** Kaggle's submission format. */
export function submissionCsv(rows: { id: number; dog: number }[]): string {
  const sorted = [...rows].sort((a, b) => a.id - b.id);
  return `id,label\n${sorted.map((r) => `${r.id},${r.dog.toPrecision(6)}`).join('\n')}\n`;
}

export async function score(o: ScoreOptions): Promise<ScoreResult> {
  const head = o.classifier.activeHead;
  if (!head) throw new CatdogError('no_head', 'No active model to score with: train one first (`catdog train --promote`).');
  const views = head.views;
  const ds = await openDataset(o.source, { kind: 'test' });
  const store = openFeatureStore(o.classifier, o.cacheDir);
  try {
    const samples = ds.samples.filter((s) => s.id !== null);
    if (!samples.length) throw new CatdogError('no_test_data', `No test photos (test/N.jpg) in ${[o.source].flat().join(', ')}.`);
    const t0 = performance.now();
    const extracted = await extractInto(store, samples, o.classifier, { cacheDir: o.cacheDir, views, signal: o.signal, onProgress: o.onProgress });
    const rows = extracted.ok.map((x) => ({ id: x.sample.id!, dog: head.predict(fusedFromStore(store, x.hash, views, head.pooling), imagenetFromStore(store, x.hash, views)) }));
    const msPerImage = (performance.now() - t0) / Math.max(1, samples.length);
    // A photo we could not read still needs a row for Kaggle: the uninformed 0.5.
    for (const f of extracted.failures) rows.push({ id: f.sample.id!, dog: 0.5 });
    rows.sort((a, b) => a.id - b.id);
    await writeFile(o.out, submissionCsv(rows));
    const result: ScoreResult = {
      n: rows.length,
      failures: extracted.failures.map((f) => ({ key: f.sample.key, reason: f.reason })),
      msPerImage,
      rows,
    };
    if (o.labels) {
      const truth = await readLabelsCsv(o.labels);
      const scored = rows.filter((r) => truth.has(r.id));
      const missing = rows.length - scored.length;
      if (missing) throw new CatdogError('labels_incomplete', `${missing} test photo(s) have no row in ${o.labels}.`);
      const y = scored.map((r) => truth.get(r.id)!);
      const p = scored.map((r) => r.dog);
      result.logloss = logLoss(y, p);
      result.accuracy = accuracy(y, p);
      result.confusion = confusion(y, p);
      const worst = worstErrors(y, p, o.worstN ?? 24);
      result.worst = worst.map((i) => ({ id: scored[i].id, label: y[i], dog: p[i] }));
      if (o.worstPng) {
        const byId = new Map(samples.map((s) => [s.id!, s]));
        const items = await Promise.all(
          result.worst.map(async (w) => ({
            image: await byId.get(w.id)!.read(),
            caption: worstCaption(w),
          })),
        );
        await writeFile(o.worstPng, await contactSheetPng(items, { title: worstTitle(result.worst) }));
      }
    }
    return result;
  } finally {
    store.close();
    await ds.close();
  }
}
