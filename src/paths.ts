/** Where catdog's own files are: the project root, and the models folder unless CATDOG_MODELS_DIR (config) moves it. */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export const DEFAULT_MODELS_DIR = resolve(projectRoot, 'models');
