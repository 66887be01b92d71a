/**
 * Whole processes: SIGTERM with work in flight (a child running src/main.ts's main()), the
 * `npm run register` script against the fake Discord, and `src/main.ts` refusing a bad .env.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MessageFlags } from 'discord.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { Store } from '../../src/store/index.ts';
import { FakeDiscord, makeUser, fakeDiscordEnv } from '../helpers/fake-discord.ts';
import { runTs, type Proc } from '../helpers/processes.ts';
import { DOGGY, makePhoto } from '../helpers/test-classifier.ts';

/** Runs a TypeScript file with tsx's loader, in `cwd` (a temp folder: no .env is read). */
const run = (script: string, env: Record<string, string>, cwd: string): Proc => runTs(script, [], env, cwd, { lineTimeoutMs: 30_000 });

let fake: FakeDiscord;
let tmp: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  fake = await FakeDiscord.start();
  tmp = mkdtempSync(join(tmpdir(), 'catdog-proc-'));
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await fake?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('SIGTERM', () => {
  it('stops taking work, finishes what is in flight, closes the store and exits 0', async () => {
    const dataDir = join(tmp, 'data');
    const child = run(
      'test/integration/main-child.ts',
      {
        ...fakeDiscordEnv(fake, dataDir),
        RATE_BURST: '0',
      },
      tmp,
    );
    children.push(child.proc);
    await child.line(/catdog is ready/);
    const web = /upload page is at (http:\/\/127\.0\.0\.1:\d+)\//.exec(await child.line(/upload page is at/))![1]!;

    const att = fake.attachment('inflight.png', await makePhoto(DOGGY), { contentType: 'image/png' });
    const first = fake.slashCommand('catdog', { user: makeUser('early'), options: [{ name: 'image', type: 11, value: att.id }], attachments: [att] });
    expect((await fake.callback(first)).body.type).toBe(5);
    await child.line(/test classifier: holding/);

    child.proc.kill('SIGTERM');
    await child.line(/SIGTERM: taking no new work; finishing 1 request\(s\) in flight/);

    // While draining: new work is refused politely, and /healthz says so.
    const late = fake.slashCommand('catdog', { user: makeUser('late'), options: [{ name: 'image', type: 11, value: att.id }], attachments: [att] });
    const refusal = await fake.callback(late);
    expect(refusal.body.type).toBe(4);
    expect(refusal.body.data.flags & MessageFlags.Ephemeral).toBe(MessageFlags.Ephemeral);
    expect(refusal.body.data.content).toBe("🔁 I'm restarting. Please try again in a minute.");
    const health = await fetch(`${web}/healthz`);
    expect(health.status).toBe(503);
    expect(((await health.json()) as any).status).toBe('shutting_down');

    const disconnected = fake.next('disconnect', 30_000);
    child.proc.kill('SIGUSR2'); // let the classification in flight finish
    const edit = await fake.originalEdit(first);
    expect(edit.body.embeds[0].title).toBe('🐶 Dog · inflight.png');
    await disconnected;
    expect(await child.exit).toBe(0);
    expect(child.out.some((l) => /shutdown complete \(exit 0\)$/.test(l))).toBe(true);
    expect(fake.downloads(att)).toBe(1); // the refused one was never fetched

    // The store was closed cleanly and kept the count of the finished answer (no photo, no URL).
    const store = await Store.open(loadConfig({ DATA_DIR: dataDir }).store);
    try {
      expect(await store.stats.get(fake.guild().id)).toEqual({ total: 1, dog: 1, cat: 0, neither: 0 });
    } finally {
      await store.close();
    }
  });
});

describe('npm run register (scripts/register-commands.ts)', () => {
  const env = () => ({
    DISCORD_TOKEN: fake.token,
    DISCORD_APP_ID: fake.appId,
    DISCORD_API_URL: fake.apiUrl,
  });

  it('registers globally, then finds nothing to change', async () => {
    fake.commands.delete('global');
    const first = run('scripts/register-commands.ts', env(), tmp);
    expect(await first.exit).toBe(0);
    expect(first.out).toContain('Registered 8 command(s) (global): /catdog, "Cat or dog?", /catdog-settings, /catdog-stats, /retrain, /score, /model, /jobs');
    expect(fake.commands.get('global')!.map((c) => c.name)).toEqual(['catdog', 'Cat or dog?', 'catdog-settings', 'catdog-stats', 'retrain', 'score', 'model', 'jobs']);
    const puts = fake.requests.filter((r) => r.method === 'PUT').length;

    const second = run('scripts/register-commands.ts', env(), tmp);
    expect(await second.exit).toBe(0);
    expect(second.out[0]).toMatch(/^Already up to date: 8 command\(s\) \(global\)/);
    expect(fake.requests.filter((r) => r.method === 'PUT').length).toBe(puts);
  });

  it('says what is missing', async () => {
    const child = run('scripts/register-commands.ts', { DISCORD_TOKEN: fake.token }, tmp);
    expect(await child.exit).toBe(2);
    expect(child.out).toContain('Registering commands needs DISCORD_APP_ID (see .env.example).');
  });
});

describe('npm start with a bad environment', () => {
  it('lists every wrong value, one sentence each, and exits 2', async () => {
    const child = run('src/main.ts', { PORT: 'eighty', DISCORD_APP_ID: 'my-bot', ATTACHMENT_HOSTS: 'https://cdn.example/x', STORE_URL: 'mongodb://x' }, tmp);
    expect(await child.exit).toBe(2);
    expect(child.out).toEqual([
      'Configuration problems:',
      '  - DISCORD_APP_ID must be a Discord id (digits only, e.g. 123456789012345678), got "my-bot".',
      '  - ATTACHMENT_HOSTS must be a comma-separated list of host names (no scheme, port or path), e.g. cdn.discordapp.com,media.discordapp.net; not host names: "https://cdn.example/x".',
      '  - PORT must be a TCP port (a whole number from 0 to 65535), got "eighty".',
      '  - STORE_URL must be sqlite://<file> or redis://[user:password@]host[:port][/db], got "mongodb://x" (leave it empty for a SQLite file under DATA_DIR).',
      'See .env.example for what each variable means.',
    ]);
  });
});

describe('npm start as the entry (node --import tsx src/main.ts, as the container image runs it)', () => {
  it('starts the embedded default to ready, answers /healthz, and exits 0 on SIGTERM', async () => {
    // src/main.ts is the entry and hands over to the role dispatcher: that must not import
    // src/main.ts a second time (its own top-level await would never settle, and the process
    // would end silently).
    const child = run('src/main.ts', { PORT: '0', WEB_HOST: '127.0.0.1', DATA_DIR: join(tmp, 'entry-data') }, tmp);
    const ready = await child.line(/web: the upload page is at (http:\/\/127\.0\.0\.1:\d+)\//, 90_000);
    const url = /(http:\/\/127\.0\.0\.1:\d+)\//.exec(ready)![1]!;
    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
    await child.line(/catdog is ready/, 30_000);
    child.proc.kill('SIGTERM');
    expect(await child.exit).toBe(0);
    expect(child.out.some((l) => l.includes('shutdown complete (exit 0)'))).toBe(true);
  }, 150_000);

  it('with SHARD_COUNT=auto (a gateway-role setting) the embedded default still logs in, as one shard', async () => {
    // discord.js's Client reads SHARD_COUNT from the environment when not told its shards: 'auto'
    // is NaN there and the client refused to start.
    const before = fake.identifies.length;
    const child = run('src/main.ts', { ...fakeDiscordEnv(fake, join(tmp, 'auto-data')), SHARD_COUNT: 'auto' }, tmp);
    await child.line(/catdog is ready/, 90_000);
    expect(fake.identifies.slice(before).map((d) => d.shard ?? [0, 1])).toEqual([[0, 1]]);
    child.proc.kill('SIGTERM');
    expect(await child.exit).toBe(0);
  }, 150_000);
});
