/** Environment → Config: defaults, every variable, every wrong value at once, and .env.example documenting them all. */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, threadsPerProcess } from '../../src/config.ts';
import { ConfigError } from '../../src/errors.ts';
import { modelSettings } from '../../src/model/settings.ts';

describe('config', () => {
  it('has working defaults', () => {
    const c = loadConfig({}, '/srv/catdog');
    expect(c.discord).toEqual({ token: null, appId: null, guildId: null, apiUrl: null, cdnUrl: null, messageContent: true });
    expect(c.attachmentHosts).toEqual(['cdn.discordapp.com', 'media.discordapp.net']);
    // Loopback unless WEB_HOST says otherwise: /metrics and /healthz are not public by default.
    expect(c.web).toEqual({
      port: 5000,
      host: '127.0.0.1',
      maxConnections: 64,
      requestTimeoutMs: 30_000,
      maxBytesInFlight: 64 * 1024 * 1024,
      rate: { burst: 10, refillMs: 3000 },
      metricsToken: null,
    });
    expect(c.dataDir).toBe('/srv/catdog/data');
    expect(c.store).toEqual({ kind: 'sqlite', url: 'sqlite:///srv/catdog/data/catdog.sqlite', path: '/srv/catdog/data/catdog.sqlite' });
    expect(c.limits).toEqual({ maxImageBytes: 25 * 1024 * 1024, maxImagePixels: 50_000_000, downloadTimeoutMs: 15_000 });
    expect(c.rate).toEqual({ burst: 5, refillMs: 6000 });
    expect(c.queue).toEqual({ size: 32, concurrency: 1, perGuild: 2, perGuildWaiting: 8, downloads: 4 });
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
        RATE_BURST: '0',
        RATE_REFILL_SECONDS: '2',
        QUEUE_SIZE: '5',
        GUILD_QUEUE_SIZE: '3',
        DOWNLOADS_AT_ONCE: '2',
        WEB_HOST: '0.0.0.0',
        WEB_MAX_CONNECTIONS: '10',
        WEB_REQUEST_TIMEOUT_SECONDS: '5',
        WEB_MAX_BYTES_IN_FLIGHT: '10MB',
        WEB_RATE_BURST: '3',
        WEB_RATE_REFILL_SECONDS: '1',
        METRICS_TOKEN: 'metrics-secret-1',
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
    expect(c.rate).toEqual({ burst: 0, refillMs: 2000 });
    expect(c.queue).toEqual({ size: 5, concurrency: 1, perGuild: 2, perGuildWaiting: 3, downloads: 2 });
    expect(c.web).toEqual({
      port: 8080,
      host: '0.0.0.0',
      maxConnections: 10,
      requestTimeoutMs: 5000,
      maxBytesInFlight: 10 * 1024 * 1024,
      rate: { burst: 3, refillMs: 1000 },
      metricsToken: 'metrics-secret-1',
    });
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
        CATDOG_PRECISION: 'fp32',
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
      precision: 'fp32',
      modelsDir: '/srv/catdog/m',
      registryDir: '/srv/catdog/m/registry',
      kerasWeightsBaseUrl: 'http://127.0.0.1:8000/keras',
    });
    expect(loadConfig({ CATDOG_MODELS_DIR: '/m', CATDOG_REGISTRY_DIR: 'r' }, '/srv').model.registryDir).toBe('/srv/r');
    // int8 by default (issue 12: the quality bound holds); backbones without a calibration fall back to fp32 (session.ts).
    expect(loadConfig({}, '/srv').model.precision).toBe('int8');
    let err: unknown;
    try {
      loadConfig({ CATDOG_BACKBONES: 'resnet50,mobilenet', CATDOG_THREADS: 'many', CATDOG_PRECISION: 'fp16', PORT: 'x' });
    } catch (e) {
      err = e;
    }
    expect((err as ConfigError).problems).toEqual([
      'PORT must be a TCP port (a whole number from 0 to 65535), got "x".',
      'CATDOG_BACKBONES must be a comma-separated list of backbones among resnet50, inception_v3, xception; unknown: "mobilenet".',
      'CATDOG_THREADS must be a number of threads (a whole number from 1 to 256), got "many".',
      'CATDOG_PRECISION must be fp32 or int8, got "fp16".',
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
        RATE_BURST: '-1',
        QUEUE_SIZE: '1.5',
        ADMIN_ROLE_IDS: '1234567890,role',
        COOLDOWN_SECONDS: '10',
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
      'RATE_BURST must be a number of photos in a row (0 turns the limit off) (a whole number from 0 to 10000), got "-1".',
      'QUEUE_SIZE must be a number of waiting jobs (a whole number from 0 to 10000), got "1.5".',
      'ADMIN_ROLE_IDS must be a comma-separated list of Discord ids; not ids: "role".',
      'COOLDOWN_SECONDS is no longer read: the per-user limit is now a burst, RATE_BURST photos in a row, then one every RATE_REFILL_SECONDS (see .env.example).',
      'DISCORD_TOKEN must be the bot token alone, without spaces or a "Bot " prefix.',
    ]);
  });
  it('never echoes a value that looks like the token (pasted into the wrong variable)', () => {
    const token = 'MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz012345678';
    let err: unknown;
    try {
      loadConfig({ DISCORD_TOKEN: token, DISCORD_APP_ID: token, PORT: token, ADMIN_USER_IDS: `123456789012345678,${token}`, WEB_RATE_BURST: `x${token}`, STORE_URL: `redis:/${token}` });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const message = (err as ConfigError).message;
    expect((err as ConfigError).problems).toHaveLength(5);
    for (const part of [token, ...token.split('.')]) expect(message).not.toContain(part);
    expect(message).toContain('DISCORD_APP_ID must be a Discord id (digits only, e.g. 123456789012345678), got (a value that looks like a token; not shown).');
    // Another bot's token, not ours, in a wrong place: still hidden by its shape.
    expect(() => loadConfig({ DISCORD_GUILD_ID: 'NzkyNzE1NDU0MTk2MDg4ODQy.X-hvzA.Ovy4MCQywSkoMRRclStW4xAYK7I' })).toThrow(/got \(a value that looks like a token; not shown\)\./);
  });

  it("cuts the inference role's threads from the machine's cores: processes × threads ≤ cores, at least 1 each, unless CATDOG_THREADS says", () => {
    expect([1, 2, 3, 4, 8, 9].map((p) => threadsPerProcess(8, p))).toEqual([8, 4, 2, 2, 1, 1]);
    expect(threadsPerProcess(1, 1)).toBe(1);
    const role = { CATDOG_ROLE: 'inference', REDIS_URL: 'redis://127.0.0.1:7' };
    expect(loadConfig(role, '/srv', 16).scale).toMatchObject({ inferenceProcesses: 1, inferenceThreads: 16, cores: 16 });
    expect(loadConfig({ ...role, INFERENCE_PROCESSES: '4' }, '/srv', 16).scale).toMatchObject({ inferenceProcesses: 4, inferenceThreads: 4 });
    expect(loadConfig({ ...role, INFERENCE_PROCESSES: '3' }, '/srv', 2).scale).toMatchObject({ inferenceProcesses: 3, inferenceThreads: 1 });
    expect(loadConfig({ ...role, INFERENCE_PROCESSES: '4', CATDOG_THREADS: '3' }, '/srv', 16).scale.inferenceThreads).toBe(3);
    expect(() => loadConfig({ ...role, INFERENCE_PROCESSES: '0' }, '/srv', 16)).toThrow(/INFERENCE_PROCESSES must be a number of model processes \(a whole number from 1 to 256\), got "0"/);
  });

  it('needs a home server for admin roles', () => {
    expect(() => loadConfig({ ADMIN_ROLE_IDS: '123456789012345678' })).toThrow(/ADMIN_ROLE_IDS needs DISCORD_GUILD_ID/);
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
