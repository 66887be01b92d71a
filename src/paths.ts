/** Where catdog keeps things on disk. `CATDOG_MODELS_DIR` moves the models folder. */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export function modelsDir(): string {
  return resolve(process.env.CATDOG_MODELS_DIR ?? resolve(projectRoot, 'models'));
}

/** Working data: feature caches, job records, reports (DATA_DIR, default ./data). */
export function dataDir(): string {
  return resolve(process.env.DATA_DIR ?? resolve(projectRoot, 'data'));
}
