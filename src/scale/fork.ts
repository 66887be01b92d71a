/** How catdog forks its own TypeScript files: node with tsx's loader, whatever started this process (npm start, vitest, a worker). */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);

/** execArgv for a child that runs a .ts file. */
export function tsExecArgv(): string[] {
  return ['--import', pathToFileURL(require.resolve('tsx')).href];
}
