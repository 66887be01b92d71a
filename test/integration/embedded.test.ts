/**
 * The embedded default (`npm start` without REDIS_URL): main() with no injected classifier runs
 * the real classifier (ResNet50) in a forked model process, the web page answers from it, and a
 * model process that dies is replaced: the request it had gets a clear error, the next ones work.
 * Plus the configuration rules of the distributed roles (SQLite refused beside other processes).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { ConfigError } from '../../src/errors.ts';
import { main, type App } from '../../src/main.ts';
import { requireShared } from '../helpers/shared.ts';
import { copyPhotos, trainingNames } from '../helpers/training-photos.ts';

const trainZip = requireShared('data', 'dogs-vs-cats', 'train.zip');
let root: string;
let app: App | null = null;
const logs: string[] = [];
let photo: Buffer;

beforeAll(async () => {
  if (!trainZip) return;
  root = mkdtempSync(join(tmpdir(), 'catdog-embedded-'));
  await copyPhotos(trainZip, join(root, 'p'), trainingNames(7, 8));
  photo = readFileSync(join(root, 'p', 'dog.7.jpg'));
  app = await main({ env: { PORT: '0', WEB_HOST: '127.0.0.1', DATA_DIR: join(root, 'data') }, handleSignals: false, log: (l) => logs.push(l) });
}, 120_000);

afterAll(async () => {
  await app?.shutdown('test over');
  if (root) rmSync(root, { recursive: true, force: true });
});

async function classify(): Promise<{ status: number; body: any }> {
  const res = await fetch(`${app!.web.url}/api/classify`, { method: 'POST', body: new Uint8Array(photo), headers: { 'content-type': 'image/jpeg' } });
  return { status: res.status, body: await res.json() };
}

describe.skipIf(!trainZip)('embedded: the model in a child process', () => {
  it('answers from the model process, not from this process', async () => {
    const line = logs.find((l) => /^model process: pid \d+ runs the classifier and the jobs/.test(l))!;
    const pid = Number(/pid (\d+)/.exec(line)![1]);
    expect(pid).not.toBe(process.pid);
    expect(() => process.kill(pid, 0)).not.toThrow();
    const r = await classify();
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ label: 'dog', backbones: ['resnet50'] });
    expect(app!.services.admin).toBeDefined(); // jobs run in the model process too
  });

  it('a model process killed is replaced; what it had fails clearly, the next request works', async () => {
    const pid = Number(/pid (\d+)/.exec(logs.find((l) => /^model process: pid \d+ runs/.test(l))!)![1]);
    process.kill(pid, 'SIGKILL');
    await expect.poll(() => logs.some((l) => /^model process: stopped \(signal SIGKILL\)/.test(l)), { timeout: 10_000 }).toBe(true);
    await expect.poll(() => logs.some((l) => /^model process: running again \(pid \d+\)/.test(l)), { timeout: 60_000, interval: 200 }).toBe(true);
    const r = await classify();
    expect(r.status).toBe(200);
    expect(r.body.label).toBe('dog');
  });
});

describe('configuration of the roles', () => {
  it('refuses a SQLite store beside other processes, needs REDIS_URL, and puts the state in Redis by default', () => {
    expect(() => loadConfig({ CATDOG_ROLE: 'gateway' })).toThrow(ConfigError);
    try {
      loadConfig({ CATDOG_ROLE: 'inference', REDIS_URL: 'redis://127.0.0.1:7', STORE_URL: 'sqlite:///tmp/x.sqlite' });
      expect.unreachable();
    } catch (err) {
      expect((err as ConfigError).problems).toEqual([
        'STORE_URL is a SQLite file, which only one process may use; CATDOG_ROLE=inference runs beside other processes, so the state must be in Redis (leave STORE_URL empty to use REDIS_URL, or set it to redis://…).',
      ]);
    }
    try {
      loadConfig({ CATDOG_ROLE: 'web' });
      expect.unreachable();
    } catch (err) {
      expect((err as ConfigError).problems).toEqual([
        'CATDOG_ROLE=web needs REDIS_URL (redis://host:port): the roles share their queues and state through Redis.',
      ]);
    }
    expect(loadConfig({ CATDOG_ROLE: 'jobs', REDIS_URL: 'redis://127.0.0.1:7' }).store).toEqual({ kind: 'redis', url: 'redis://127.0.0.1:7' });
    expect(loadConfig({}).scale.role).toBe('embedded');
    expect(() => loadConfig({ CATDOG_ROLE: 'everything' })).toThrow(/CATDOG_ROLE must be one of embedded, gateway, inference, jobs, web/);
  });
});
