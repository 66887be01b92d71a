/**
 * The parts under the bot and the web page, on their own: configuration, the bounded queue, the
 * store (SQLite always; Redis too when a redis-server binary is on PATH) and the download rules.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayIntentBits } from 'discord.js';
import { botIntents } from '../../src/bot/client.ts';
import { downloadImage } from '../../src/bot/download.ts';
import { loadConfig, type StoreConfig } from '../../src/config.ts';
import { modelSettings } from '../../src/model/settings.ts';
import { Busy, ConfigError, DownloadFailed, HostNotAllowed, ImageTooLarge, ShuttingDown } from '../../src/errors.ts';
import { ClassifyQueue, WorkGate } from '../../src/queue.ts';
import { Store } from '../../src/store/index.ts';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'catdog-parts-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('config', () => {
  it('has working defaults', () => {
    const c = loadConfig({}, '/srv/catdog');
    expect(c.discord).toEqual({ token: null, appId: null, guildId: null, apiUrl: null, cdnUrl: null, messageContent: true });
    expect(c.attachmentHosts).toEqual(['cdn.discordapp.com', 'media.discordapp.net']);
    expect(c.web).toEqual({ port: 5000, host: '0.0.0.0' });
    expect(c.dataDir).toBe('/srv/catdog/data');
    expect(c.store).toEqual({ kind: 'sqlite', url: 'sqlite:///srv/catdog/data/catdog.sqlite', path: '/srv/catdog/data/catdog.sqlite' });
    expect(c.limits).toEqual({ maxImageBytes: 25 * 1024 * 1024, maxImagePixels: 50_000_000, downloadTimeoutMs: 15_000 });
    expect(c.cooldownSeconds).toBe(10);
    expect(c.queue).toEqual({ size: 32, concurrency: 1, perGuild: 2 });
    expect(c.admins).toEqual({ userIds: [], roleIds: [] });
    expect(c.data).toEqual({ train: [], test: null, testLabels: null });
  });

  it('reads every variable', () => {
    const c = loadConfig(
      {
        DISCORD_TOKEN: 'abc.def.ghi',
        DISCORD_APP_ID: '123456789012345678',
        DISCORD_GUILD_ID: '223456789012345678',
        DISCORD_API_URL: 'http://127.0.0.1:9999/api/',
        MESSAGE_CONTENT_INTENT: 'false',
        ATTACHMENT_HOSTS: ' CDN.discordapp.com , 127.0.0.1',
        PORT: '8080',
        DATA_DIR: 'state',
        STORE_URL: 'redis://:secret@127.0.0.1:6379/2',
        MAX_IMAGE_BYTES: '8MB',
        COOLDOWN_SECONDS: '0',
        QUEUE_SIZE: '5',
        ADMIN_USER_IDS: '123456789012345678, 223456789012345678',
        ADMIN_ROLE_IDS: '',
        TRAIN_DATA: 'data/train.zip, /abs/train-200px.zip',
        TEST_DATA: '/abs/test.zip',
        TEST_LABELS: 'labels.csv',
      },
      '/srv/catdog',
    );
    expect(c.discord).toMatchObject({ token: 'abc.def.ghi', apiUrl: 'http://127.0.0.1:9999/api', messageContent: false });
    expect(c.attachmentHosts).toEqual(['cdn.discordapp.com', '127.0.0.1']);
    expect(c.web.port).toBe(8080);
    expect(c.dataDir).toBe('/srv/catdog/state');
    expect(c.store).toEqual({ kind: 'redis', url: 'redis://:secret@127.0.0.1:6379/2' });
    expect(c.limits.maxImageBytes).toBe(8 * 1024 * 1024);
    expect(c.cooldownSeconds).toBe(0);
    expect(c.queue.size).toBe(5);
    expect(c.admins).toEqual({ userIds: ['123456789012345678', '223456789012345678'], roleIds: [] });
    expect(c.data).toEqual({ train: ['/srv/catdog/data/train.zip', '/abs/train-200px.zip'], test: '/abs/test.zip', testLabels: '/srv/catdog/labels.csv' });
  });

  it('reads the model section with the same reader: defaults, every variable, and wrong values among the others', () => {
    expect(loadConfig({}, '/srv/catdog').model).toEqual(modelSettings());
    const m = loadConfig(
      {
        CATDOG_BACKBONES: 'resnet50, xception',
        CATDOG_WEIGHTS_XCEPTION: 'generated:7',
        CATDOG_HEAD: 'heads/h.json',
        CATDOG_THREADS: '3',
        CATDOG_SPIN: '1',
        CATDOG_ARENA: '0',
        CATDOG_MODELS_DIR: 'm',
        KERAS_WEIGHTS_BASE_URL: 'http://127.0.0.1:8000/keras/',
      },
      '/srv/catdog',
    ).model;
    expect(m).toEqual({
      backbones: ['resnet50', 'xception'],
      weights: { xception: 'generated:7' },
      head: '/srv/catdog/heads/h.json',
      threads: 3,
      spin: true,
      arena: false,
      modelsDir: '/srv/catdog/m',
      registryDir: '/srv/catdog/m/registry',
      kerasWeightsBaseUrl: 'http://127.0.0.1:8000/keras',
    });
    expect(loadConfig({ CATDOG_MODELS_DIR: '/m', CATDOG_REGISTRY_DIR: 'r' }, '/srv').model.registryDir).toBe('/srv/r');
    let err: unknown;
    try {
      loadConfig({ CATDOG_BACKBONES: 'resnet50,mobilenet', CATDOG_THREADS: 'many', PORT: 'x' });
    } catch (e) {
      err = e;
    }
    expect((err as ConfigError).problems).toEqual([
      'PORT must be a TCP port (a whole number from 0 to 65535), got "x".',
      'CATDOG_BACKBONES must be a comma-separated list of backbones among resnet50, inception_v3, xception; unknown: "mobilenet".',
      'CATDOG_THREADS must be a number of threads (a whole number from 1 to 256), got "many".',
    ]);
  });

  it('reports every wrong value at once, one sentence each', () => {
    let err: unknown;
    try {
      loadConfig({
        DISCORD_TOKEN: 'Bot abc',
        DISCORD_GUILD_ID: '12ab',
        DISCORD_API_URL: 'ftp://x',
        MESSAGE_CONTENT_INTENT: 'maybe',
        MAX_IMAGE_BYTES: 'lots',
        COOLDOWN_SECONDS: '-1',
        QUEUE_SIZE: '1.5',
        ADMIN_ROLE_IDS: '1234567890,role',
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([
      'DISCORD_GUILD_ID must be a Discord id (digits only, e.g. 123456789012345678), got "12ab".',
      'DISCORD_API_URL must be an http(s) URL, got the ftp scheme in "ftp://x".',
      'MESSAGE_CONTENT_INTENT must be true or false, got "maybe".',
      'MAX_IMAGE_BYTES must be a size in bytes from 1 to 1073741824 (e.g. 8388608 or 8MB), got "lots".',
      'COOLDOWN_SECONDS must be a number of seconds (0 turns the cooldown off) (a whole number from 0 to 86400), got "-1".',
      'QUEUE_SIZE must be a number of waiting jobs (a whole number from 0 to 10000), got "1.5".',
      'ADMIN_ROLE_IDS must be a comma-separated list of Discord ids; not ids: "role".',
      'DISCORD_TOKEN must be the bot token alone, without spaces or a "Bot " prefix.',
    ]);
  });
});

describe('intents', () => {
  it('asks for Message Content only when configured to', () => {
    expect(botIntents(true)).toEqual([GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages, GatewayIntentBits.MessageContent]);
    expect(botIntents(false)).toEqual([GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages]);
  });
});

describe('ClassifyQueue', () => {
  /** A job that runs until released. */
  function job() {
    let release!: () => void;
    let started = false;
    const gate = new Promise<void>((r) => (release = r));
    return {
      fn: async () => {
        started = true;
        await gate;
        return 'done';
      },
      release,
      get started() {
        return started;
      },
    };
  }

  it('caps concurrency, keeps a fixed number of waiting places, and refuses the rest as Busy', async () => {
    const q = new ClassifyQueue({ size: 1, concurrency: 1, perKey: 1 });
    const a = job();
    const b = job();
    const pa = q.run('g1', a.fn);
    const pb = q.run('g2', b.fn);
    expect(q.stats()).toEqual({ waiting: 1, running: 1, size: 1, concurrency: 1 });
    expect(q.wouldRefuse('g3')).toBe(true);
    await expect(q.run('g3', async () => 'x')).rejects.toBeInstanceOf(Busy);
    expect(a.started).toBe(true);
    expect(b.started).toBe(false);
    a.release();
    expect(await pa).toBe('done');
    b.release();
    expect(await pb).toBe('done');
    await q.idle();
    expect(q.stats()).toEqual({ waiting: 0, running: 0, size: 1, concurrency: 1 });
  });

  it('does not let one busy guild hold back another', async () => {
    const q = new ClassifyQueue({ size: 10, concurrency: 2, perKey: 1 });
    const a1 = job();
    const a2 = job();
    const b1 = job();
    const p = [q.run('busy', a1.fn), q.run('busy', a2.fn), q.run('other', b1.fn)];
    // 'busy' has its one slot; its second job waits, and 'other' runs in the free slot.
    expect(a1.started).toBe(true);
    expect(a2.started).toBe(false);
    await Promise.resolve();
    expect(b1.started).toBe(true);
    a1.release();
    await p[0];
    expect(a2.started).toBe(true);
    a2.release();
    b1.release();
    await Promise.all(p);
  });

  it('drops a waiting job whose signal aborts, and refuses new work after close() while finishing the rest', async () => {
    const q = new ClassifyQueue({ size: 5, concurrency: 1, perKey: 5 });
    const a = job();
    const pa = q.run('k', a.fn);
    const ctrl = new AbortController();
    const waiting = q.run('k', async () => 'never', ctrl.signal);
    ctrl.abort(new Error('user left'));
    await expect(waiting).rejects.toThrow('user left');
    expect(q.stats().waiting).toBe(0);
    q.close();
    await expect(q.run('k', async () => 'x')).rejects.toBeInstanceOf(ShuttingDown);
    const idle = q.idle();
    a.release();
    await idle;
    expect(await pa).toBe('done');
  });

  it('WorkGate waits for work in flight and refuses new work once closed', async () => {
    const gate = new WorkGate();
    const leave = gate.enter();
    let closed = false;
    const closing = gate.close().then(() => (closed = true));
    expect(() => gate.enter()).toThrow(ShuttingDown);
    await Promise.resolve();
    expect(closed).toBe(false);
    leave();
    await closing;
    expect(closed).toBe(true);
  });
});

/** The store's behaviour, the same on every backend. */
function storeContract(name: string, config: () => StoreConfig | null) {
  describe(`store (${name})`, () => {
    it('keeps settings, channel overrides, stats and cooldowns, across a reopen', async () => {
      const cfg = config();
      if (!cfg) return;
      const g = `g${Date.now()}`;
      let store = await Store.open(cfg);
      try {
        expect(await store.settings.autoDetect(g, 'c1')).toEqual({ enabled: false, style: 'reply' });
        await store.settings.updateGuild(g, { autoDetect: true });
        await store.settings.setChannel('c2', { autoDetect: false });
        await store.settings.updateGuild(g, { style: 'react' });
        expect(await store.settings.autoDetect(g, 'c1')).toEqual({ enabled: true, style: 'react' });
        expect(await store.settings.autoDetect(g, 'c2')).toEqual({ enabled: false, style: 'react' });
        // Concurrent increments are not lost.
        await Promise.all(['dog', 'dog', 'cat', 'dog', 'neither'].map((l) => store.stats.record(g, l as 'dog')));
      } finally {
        await store.close();
      }
      store = await Store.open(cfg);
      try {
        expect(await store.stats.get(g)).toEqual({ total: 5, dog: 3, cat: 1, neither: 1 });
        expect(await store.settings.guild(g)).toEqual({ autoDetect: true, style: 'react' });
        await store.settings.setChannel('c2', { autoDetect: null });
        expect(await store.settings.autoDetect(g, 'c2')).toEqual({ enabled: true, style: 'react' });

        const u = `u${Date.now()}`;
        const t0 = Date.now();
        expect(await store.cooldowns.take(u, 30, t0)).toEqual({ allowed: true });
        expect(await store.cooldowns.take(u, 30, t0 + 1000)).toEqual({ allowed: false, retryAfterMs: 29_000, notify: true });
        expect(await store.cooldowns.take(u, 30, t0 + 2000)).toEqual({ allowed: false, retryAfterMs: 28_000, notify: false });
        expect(await store.cooldowns.take(u, 30, t0 + 30_001)).toEqual({ allowed: true });
        expect(await store.cooldowns.take(u, 0, t0 + 30_002)).toEqual({ allowed: true });
      } finally {
        await store.close();
      }
    });
  });
}

storeContract('SQLite', () => {
  const path = join(tmp, 'contract.sqlite');
  return { kind: 'sqlite', url: `sqlite://${path}`, path };
});

let redis: ChildProcess | null = null;
let redisUrl: string | null = null;
const redisBin = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).stdout.trim();
describe.skipIf(!redisBin)('with a local redis-server', () => {
  beforeAll(async () => {
    // A free loopback port: bind, read it, release, hand it to redis.
    const probe = createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    redis = spawn(redisBin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let seen = '';
    await new Promise<void>((resolveReady, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${seen}`)), 15_000);
      redis!.stdout!.on('data', (d: Buffer) => {
        seen += d.toString();
        if (/Ready to accept connections/.test(seen)) {
          clearTimeout(timer);
          resolveReady();
        }
      });
    });
    redisUrl = `redis://127.0.0.1:${port}`;
  });
  afterAll(() => {
    redis?.kill('SIGTERM');
  });
  storeContract('Redis', () => (redisUrl ? { kind: 'redis', url: redisUrl } : null));
});
if (!redisBin) console.warn('skipping the Redis store test: no redis-server on PATH (apt-get install -y redis-server)');

describe('downloadImage', () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === '/ok.png') return res.writeHead(200, { 'content-length': '4' }).end(Buffer.from([1, 2, 3, 4]));
      if (req.url === '/redirect-away') return res.writeHead(302, { location: 'http://localhost:1/evil.png' }).end();
      if (req.url === '/redirect-home') return res.writeHead(302, { location: '/ok.png' }).end();
      if (req.url === '/chunked') {
        res.writeHead(200); // no content-length: counted while reading
        for (let k = 0; k < 8; k++) res.write(Buffer.alloc(1024));
        return res.end();
      }
      if (req.url === '/slow') return res.writeHead(200, { 'content-length': '10' }).write(Buffer.alloc(1)); // never finishes
      res.writeHead(404).end();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  const opts = { allowedHosts: ['127.0.0.1'], maxBytes: 4096, timeoutMs: 2000 };

  it('downloads from an allowed host, following redirects only to allowed hosts', async () => {
    expect([...(await downloadImage(`${base}/ok.png`, opts))]).toEqual([1, 2, 3, 4]);
    expect([...(await downloadImage(`${base}/redirect-home`, opts))]).toEqual([1, 2, 3, 4]);
    await expect(downloadImage(`${base}/redirect-away`, opts)).rejects.toBeInstanceOf(HostNotAllowed);
  });

  it('refuses other hosts, other schemes, plain http off loopback, and credentials, without connecting', async () => {
    await expect(downloadImage('https://evil.example/cat.png', opts)).rejects.toBeInstanceOf(HostNotAllowed);
    await expect(downloadImage('file:///etc/passwd', opts)).rejects.toBeInstanceOf(DownloadFailed);
    await expect(downloadImage('http://cdn.discordapp.com/x.png', { ...opts, allowedHosts: ['cdn.discordapp.com'] })).rejects.toThrow('I only open https:// links.');
    await expect(downloadImage(`http://u:p@127.0.0.1:1/x.png`, opts)).rejects.toThrow('user name or password');
    await expect(downloadImage('not a url', opts)).rejects.toBeInstanceOf(DownloadFailed);
  });

  it('enforces the byte limit while reading, and the time limit', async () => {
    await expect(downloadImage(`${base}/chunked`, opts)).rejects.toBeInstanceOf(ImageTooLarge);
    await expect(downloadImage(`${base}/slow`, { ...opts, timeoutMs: 1000 })).rejects.toThrow('The image took longer than 1 s to download.');
    await expect(downloadImage(`${base}/missing`, opts)).rejects.toThrow('HTTP 404');
  });
});

describe('.env.example', () => {
  it('documents every variable src/config.ts reads', () => {
    const repo = resolve(import.meta.dirname, '..', '..');
    const source = readFileSync(join(repo, 'src', 'config.ts'), 'utf8');
    const read = new Set([...source.matchAll(/r\.\w+\('([A-Z_]+)'/g)].map((m) => m[1]!));
    read.add('STORE_URL');
    const example = readFileSync(join(repo, '.env.example'), 'utf8');
    const documented = new Set([...example.matchAll(/^#?\s*([A-Z_]+)=/gm)].map((m) => m[1]!));
    expect([...read].filter((v) => !documented.has(v))).toEqual([]);
    expect(read.size).toBeGreaterThanOrEqual(20);
  });
});
