/**
 * The weight download, against a local HTTP server on 127.0.0.1 serving a generated file: good
 * md5, wrong md5, 404, a server that drops the connection mid-body, and the `npm run weights`
 * command (idempotence, --only, --from, --base-url, progress output).
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError } from '../../src/errors.ts';
import {
  copyVerified,
  downloadVerified,
  ensureKerasWeights,
  KERAS_APPLICATIONS_URL,
  KERAS_WEIGHTS,
  kerasWeightsUrl,
  type KerasWeightsEntry,
} from '../../src/model/weights/download.ts';
import { progressPrinter } from '../../src/cli/progress.ts';
import { loadConfig } from '../../src/config.ts';
import { weightsCommand } from '../../scripts/weights.ts';

const BODY = randomBytes(3 * 1024 * 1024 + 123);
const MD5 = createHash('md5').update(BODY).digest('hex');
const OTHER = randomBytes(200_000);

let server: Server;
let base: string;
const hits: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const url = req.url ?? '/';
    hits.push(url);
    if (url.startsWith('/files/') || url.startsWith('/mirror/')) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BODY.length });
      res.end(BODY);
    } else if (url === '/redirect') {
      res.writeHead(302, { location: '/files/after-redirect.h5' });
      res.end();
    } else if (url === '/drop') {
      // Announces the whole file, sends a third, then cuts the connection.
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BODY.length });
      res.write(BODY.subarray(0, 1024 * 1024), () => setTimeout(() => res.socket?.destroy(), 50));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    }
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

const made: string[] = [];

afterAll(async () => {
  await new Promise<void>((ok) => server.close(() => ok()));
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

function freshDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'catdog-weights-'));
  made.push(d);
  return d;
}

/** A stream that keeps what is written to it, TTY or not. */
function sink(isTTY: boolean): NodeJS.WriteStream & { text(): string } {
  const chunks: string[] = [];
  const w = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  }) as unknown as NodeJS.WriteStream & { text(): string };
  Object.assign(w, { isTTY, text: () => chunks.join('') });
  return w;
}

const quiet = { log: () => {}, progress: null };

describe('KERAS_WEIGHTS', () => {
  it('holds the canonical URLs and md5 hashes from keras-weights.md', () => {
    expect(KERAS_WEIGHTS.inception_v3).toEqual({
      url: 'https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5',
      md5: 'bcbd6486424b2319ff4ef7d526e38f63',
      file: 'inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5',
    });
    expect(KERAS_WEIGHTS.xception.url).toBe(
      'https://storage.googleapis.com/tensorflow/keras-applications/xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5',
    );
    expect(KERAS_WEIGHTS.xception.md5).toBe('b0042744bf5b25fce3cb969f33bebb97');
    expect(KERAS_WEIGHTS.resnet50.url).toBe(
      'https://storage.googleapis.com/tensorflow/keras-applications/resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5',
    );
    expect(KERAS_WEIGHTS.resnet50.md5).toBe('4d473c1dd8becc155b73f8504c6f6626');
  });

  it('the base URL is replaceable, keeping the <model>/<file> layout', () => {
    expect(kerasWeightsUrl('xception', 'http://127.0.0.1:9/mirror/')).toBe(
      'http://127.0.0.1:9/mirror/xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5',
    );
    expect(kerasWeightsUrl('resnet50', '')).toBe(KERAS_WEIGHTS.resnet50.url);
  });
});

describe('downloadVerified', () => {
  it('good md5: streams, verifies, renames; no .part left', async () => {
    const dir = freshDir();
    const dest = join(dir, 'w.h5');
    const lines: string[] = [];
    await downloadVerified(`${base}/files/w.h5`, MD5, dest, { log: (l) => lines.push(l), progress: null });
    expect(readFileSync(dest).equals(BODY)).toBe(true);
    expect(readdirSync(dir)).toEqual(['w.h5']);
    expect(lines.at(-1)).toMatch(/^Saved .*w\.h5 \(3\.0 MB, md5 ok, [\d.]+ s\)\.$/);
  });

  it('follows a redirect', async () => {
    const dest = join(freshDir(), 'r.h5');
    await downloadVerified(`${base}/redirect`, MD5, dest, quiet);
    expect(readFileSync(dest).equals(BODY)).toBe(true);
  });

  it('wrong md5: the .part is deleted and the message says so', async () => {
    const dir = freshDir();
    const dest = join(dir, 'w.h5');
    const wrong = '0123456789abcdef0123456789abcdef';
    const err = await downloadVerified(`${base}/files/w.h5`, wrong, dest, quiet).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect((err as ModelError).code).toBe('weights_checksum');
    expect((err as ModelError).message).toBe(
      `The downloaded w.h5 (3.0 MB) has md5 ${MD5}, but Keras's file has md5 ${wrong}. The file is corrupt, incomplete or a different file. Nothing was saved.`,
    );
    expect(readdirSync(dir)).toEqual([]);
  });

  it('HTTP 404: a clear error, nothing written', async () => {
    const dir = freshDir();
    const err = await downloadVerified(`${base}/missing.h5`, MD5, join(dir, 'w.h5'), quiet).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect((err as Error).message).toBe(
      `Downloading w.h5 failed: ${base}/missing.h5 answered HTTP 404. The file is not at that address; check the URL (and KERAS_WEIGHTS_BASE_URL if you set it).`,
    );
    expect(readdirSync(dir)).toEqual([]);
  });

  it('server drops the connection mid-body: .part cleaned up, nothing half-written', async () => {
    const dir = freshDir();
    const dest = join(dir, 'w.h5');
    const err = await downloadVerified(`${base}/drop`, MD5, dest, quiet).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect((err as Error).message).toMatch(/^Download of w\.h5 broke off after [\d.]+ of 3\.0 MB \(.+\); nothing was saved\. Run it again\.$/);
    expect(existsSync(dest)).toBe(false);
    expect(existsSync(`${dest}.part`)).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('nobody listening: says the host cannot be reached', async () => {
    const closed = createServer();
    await new Promise<void>((ok) => closed.listen(0, '127.0.0.1', ok));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((ok) => closed.close(() => ok()));
    const dir = freshDir();
    await expect(downloadVerified(`http://127.0.0.1:${port}/x.h5`, MD5, join(dir, 'x.h5'), quiet)).rejects.toThrow(
      new RegExp(`^Could not reach 127\\.0\\.0\\.1:${port} to download x\\.h5 \\(.*ECONNREFUSED.*\\)\\. Is the network up\\?$`),
    );
    expect(readdirSync(dir)).toEqual([]);
  });

  it('cancelled by its signal: nothing left behind', async () => {
    const dir = freshDir();
    const ac = new AbortController();
    ac.abort();
    await expect(downloadVerified(`${base}/files/w.h5`, MD5, join(dir, 'w.h5'), { ...quiet, signal: ac.signal })).rejects.toThrow(/cancelled/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('progress: a redrawn line with percent and MB/s on a TTY, plain lines otherwise', async () => {
    const tty = sink(true);
    await downloadVerified(`${base}/files/p.h5`, MD5, join(freshDir(), 'p.h5'), { log: () => {}, progress: progressPrinter(tty, { ci: false }) });
    expect(tty.text()).toContain('\r');
    expect(tty.text()).toMatch(/p\.h5: 100% 3\.0\/3\.0 MB [\d.]+ MB\/s\n$/);
    const plain = sink(false);
    await downloadVerified(`${base}/files/p.h5`, MD5, join(freshDir(), 'p.h5'), { log: () => {}, progress: progressPrinter(plain) });
    expect(plain.text()).not.toContain('\r');
    expect(plain.text().trimEnd().split('\n').at(-1)).toMatch(/^p\.h5: 100% 3\.0\/3\.0 MB [\d.]+ MB\/s$/);
  });
});

describe('copyVerified', () => {
  it('copies a file with the right md5, refuses one with another', async () => {
    const dir = freshDir();
    const src = join(dir, 'mine.h5');
    writeFileSync(src, BODY);
    const dest = join(dir, 'out', 'w.h5');
    await copyVerified(src, MD5, dest, quiet);
    expect(readFileSync(dest).equals(BODY)).toBe(true);

    const bad = join(dir, 'other.h5');
    writeFileSync(bad, OTHER);
    const dest2 = join(dir, 'out', 'w2.h5');
    await expect(copyVerified(bad, MD5, dest2, quiet)).rejects.toMatchObject({ code: 'weights_checksum' });
    expect(readdirSync(join(dir, 'out'))).toEqual(['w.h5']);
  });
});

describe('ensureKerasWeights', () => {
  const entries = (): Partial<Record<'xception', KerasWeightsEntry>> => ({
    xception: { url: `${base}/files/x.h5`, md5: MD5, file: 'x.h5' },
  });

  it('is idempotent: a file with the right md5 is kept without a request', async () => {
    const dir = freshDir();
    const first = await ensureKerasWeights('xception', { ...quiet, dir, entries: entries() });
    expect(first).toEqual({ backbone: 'xception', path: join(dir, 'x.h5'), action: 'downloaded' });
    const before = hits.length;
    const lines: string[] = [];
    const second = await ensureKerasWeights('xception', { log: (l) => lines.push(l), progress: null, dir, entries: entries() });
    expect(second.action).toBe('present');
    expect(hits.length).toBe(before);
    expect(lines).toEqual([`x.h5 is already in ${dir} (md5 ok).`]);
  });

  it('replaces a file whose md5 is wrong', async () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'x.h5'), OTHER);
    const r = await ensureKerasWeights('xception', { ...quiet, dir, entries: entries() });
    expect(r.action).toBe('downloaded');
    expect(readFileSync(join(dir, 'x.h5')).equals(BODY)).toBe(true);
  });

  it("with the real table and a mirror serving another file: md5 mismatch, nothing saved", async () => {
    const dir = freshDir();
    const before = hits.length;
    const err = await ensureKerasWeights('inception_v3', { ...quiet, dir, baseUrl: `${base}/mirror` }).catch((e: unknown) => e);
    expect(hits.slice(before)).toEqual([`/mirror/inception_v3/${KERAS_WEIGHTS.inception_v3.file}`]);
    expect((err as Error).message).toContain(`has md5 ${MD5}, but Keras's file has md5 bcbd6486424b2319ff4ef7d526e38f63`);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('KERAS_WEIGHTS_BASE_URL is used when no --base-url is given', async () => {
    const baseUrl = loadConfig({ KERAS_WEIGHTS_BASE_URL: `${base}/mirror/` }).model.kerasWeightsBaseUrl ?? undefined;
    const before = hits.length;
    await weightsCommand(['--only', 'resnet50', '--dir', freshDir()], { stdout: sink(false), stderr: sink(false), baseUrl });
    expect(hits.slice(before)).toEqual([`/mirror/resnet/${KERAS_WEIGHTS.resnet50.file}`]);
  });
});

describe('npm run weights (weightsCommand)', () => {
  // The generated file stands in for Keras's xception file; its URL keeps Keras's layout so
  // --base-url is exercised.
  const entries = {
    xception: { url: `${KERAS_APPLICATIONS_URL}/xception/x.h5`, md5: MD5, file: 'x.h5' },
    inception_v3: { url: `${KERAS_APPLICATIONS_URL}/inception_v3/i.h5`, md5: createHash('md5').update(OTHER).digest('hex'), file: 'i.h5' },
  };

  it('--only xception --base-url: downloads once, then finds it there', async () => {
    const dir = freshDir();
    const out = sink(false);
    const err = sink(false);
    const code = await weightsCommand(['--only', 'xception', '--dir', dir, '--base-url', `${base}/mirror`], { stdout: out, stderr: err, entries });
    expect(err.text()).not.toContain('error');
    expect(code).toBe(0);
    expect(out.text()).toContain(`Downloading x.h5 (3.0 MB) from ${base}/mirror/xception/x.h5`);
    expect(out.text()).toContain(`Ready in ${dir}: xception.`);
    expect(readFileSync(join(dir, 'x.h5')).equals(BODY)).toBe(true);

    const out2 = sink(false);
    expect(await weightsCommand(['--only', 'xception', '--dir', dir, '--base-url', `${base}/mirror`], { stdout: out2, stderr: sink(false), entries })).toBe(0);
    expect(out2.text()).toContain('x.h5 is already in');
    expect(out2.text()).not.toContain('Downloading');
  });

  it('a failed download exits 1 with the reason; other backbones still proceed', async () => {
    const dir = freshDir();
    const out = sink(false);
    const err = sink(false);
    // Default set = inception_v3 + xception; the mirror serves BODY for both, which is wrong for inception_v3.
    const code = await weightsCommand(['--dir', dir, '--base-url', `${base}/mirror`], { stdout: out, stderr: err, entries });
    expect(code).toBe(1);
    expect(err.text()).toMatch(/^error: The downloaded i\.h5 \(3\.0 MB\) has md5 [0-9a-f]{32}, but Keras's file has md5 [0-9a-f]{32}\./m);
    expect(readdirSync(dir).sort()).toEqual(['x.h5']);
  });

  it('--from a local file: identified by md5 and copied, without any request', async () => {
    const dir = freshDir();
    const src = join(freshDir(), 'downloaded-earlier.h5');
    writeFileSync(src, OTHER);
    const before = hits.length;
    const out = sink(false);
    const code = await weightsCommand(['--from', src, '--dir', dir], { stdout: out, stderr: sink(false), entries });
    expect(code).toBe(0);
    expect(hits.length).toBe(before);
    expect(readFileSync(join(dir, 'i.h5')).equals(OTHER)).toBe(true);
    expect(out.text()).toContain(`Ready in ${dir}: inception_v3.`);
  });

  it('a local folder is searched by file name; an unknown file is refused with its md5', async () => {
    const folder = freshDir();
    writeFileSync(join(folder, 'x.h5'), BODY);
    const dir = freshDir();
    expect(await weightsCommand([folder, '--dir', dir], { stdout: sink(false), stderr: sink(false), entries })).toBe(0);
    expect(readdirSync(dir)).toEqual(['x.h5']);

    const stranger = join(folder, 'stranger.h5');
    writeFileSync(stranger, Buffer.from('not a weight file'));
    const err = sink(false);
    expect(await weightsCommand(['--from', stranger, '--dir', freshDir()], { stdout: sink(false), stderr: err, entries })).toBe(1);
    expect(err.text()).toMatch(/stranger\.h5 \(md5 [0-9a-f]{32}\) is none of Keras's notop files/);
  });

  it('usage errors exit 2 and say what is valid', async () => {
    const err = sink(false);
    expect(await weightsCommand(['--only', 'resnet50,vgg16'], { stdout: sink(false), stderr: err })).toBe(2);
    expect(err.text()).toBe('--only takes backbone names among resnet50, inception_v3, xception; "vgg16" is not one.\n');
    const err2 = sink(false);
    expect(await weightsCommand(['--frm', 'x'], { stdout: sink(false), stderr: err2 })).toBe(2);
    expect(err2.text()).toContain("Unknown option '--frm'");
  });
});
