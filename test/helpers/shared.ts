/**
 * Locating ../shared (development data and reference files) from tests.
 * In CI (CI=true) a missing file is a failure; elsewhere the test is skipped with a message.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const sharedRoot = process.env.CATDOG_SHARED ?? resolve(repoRoot, '..', 'shared');

/** Absolute path of a file under shared/, or null when it is not there. */
export function sharedPath(...parts: string[]): string | null {
  const p = join(sharedRoot, ...parts);
  return existsSync(p) ? p : null;
}

/**
 * Returns the path when it exists. When it does not: throws in CI (so the run fails loudly),
 * otherwise returns null and prints what is missing, for the caller to skip.
 */
export function requireShared(...parts: string[]): string | null {
  const p = sharedPath(...parts);
  if (p) return p;
  const msg = `missing ${join(sharedRoot, ...parts)} (the shared data and reference folder beside the repository)`;
  if (process.env.CI) throw new Error(`${msg}: CI needs it`);
  console.warn(`skipping: ${msg}`);
  return null;
}
