/** `catdog predict [--json] [--head FILE] <file|dir>...`: one line per image. */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CatdogError, ImageTooLarge } from '../errors.ts';
import { Classifier } from '../model/classifier.ts';
import { DEFAULT_LIMITS } from '../vision/decode.ts';
import type { Config } from '../config.ts';

const IMAGE_EXT = /\.(jpe?g|png|gif|webp|avif|tiff?|heic|heif|bmp)$/i;

/** Files named on the command line; a folder contributes its image files (sorted, not recursive). */
export async function expandInputs(paths: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths) {
    let s;
    try {
      s = await stat(p);
    } catch {
      out.push(p); // reported as an error when read
      continue;
    }
    if (s.isDirectory()) {
      const names = (await readdir(p)).filter((n) => IMAGE_EXT.test(n)).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
      out.push(...names.map((n) => join(p, n)));
    } else out.push(p);
  }
  return out;
}

export function describeError(err: unknown): string {
  if (err instanceof CatdogError) return err.message;
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ENOENT') return 'No such file.';
  if (e?.code === 'EISDIR') return 'Is a folder.';
  if (e?.code === 'EACCES') return 'Permission denied.';
  return `Unexpected error: ${e?.message ?? String(err)}`;
}

async function readLimited(path: string, maxBytes: number): Promise<Buffer> {
  const s = await stat(path);
  if (s.size > maxBytes) throw new ImageTooLarge(s.size, maxBytes);
  return readFile(path);
}

export async function predictCommand(argv: string[], config: Config, out = process.stdout, err = process.stderr): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      json: { type: 'boolean', default: false },
      head: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help || positionals.length === 0) {
    err.write('usage: catdog predict [--json] [--head FILE] <file|dir>...\n');
    return values.help ? 0 : 2;
  }
  const files = await expandInputs(positionals);
  let classifier: Classifier;
  try {
    classifier = await Classifier.load({ model: config.model, head: values.head, log: (l) => err.write(`${l}\n`) });
  } catch (e) {
    err.write(`catdog: ${describeError(e)}\n`);
    return 2;
  }
  err.write(`catdog: ${classifier.describe()} (loaded in ${(classifier.info().loadMs / 1000).toFixed(1)} s)\n`);
  if (!classifier.activeHead) {
    err.write(
      'catdog: no trained head is available, so there is no cat/dog probability to print. Train one (`catdog train`) or pass --head FILE.\n',
    );
    await classifier.close();
    return 2;
  }
  let failed = 0;
  const maxBytes = DEFAULT_LIMITS.maxBytes;
  for (const file of files) {
    const t0 = performance.now();
    try {
      const p = await classifier.classify(await readLimited(file, maxBytes));
      const ms = Math.round(performance.now() - t0);
      if (values.json) out.write(`${JSON.stringify({ file, dog: Number(p.dog.toFixed(6)), label: p.label, precision: p.precision, ms })}\n`);
      else {
        const extra = p.label === 'neither' ? ` (looks like neither: ${p.imagenetTop[0]?.label ?? '?'})` : '';
        out.write(`${file}\t${p.label}\tdog ${(p.dog * 100).toFixed(1)}%${extra}\t${ms} ms\n`);
      }
    } catch (e) {
      failed++;
      if (values.json) out.write(`${JSON.stringify({ file, error: describeError(e) })}\n`);
      else out.write(`${file}\terror: ${describeError(e)}\n`);
    }
  }
  await classifier.close();
  return failed ? 1 : 0;
}
