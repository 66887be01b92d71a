/**
 * `npm run bench:abuse`: what the bot's process does under abuse, on loopback only. Starts the
 * process under test (scripts/bench-abuse-server.ts: the real app with a slow test classifier)
 * against a fake Discord in this process, then runs, one after another:
 *
 *   uploads   60 concurrent uploads of 20 MB while the queue is busy
 *   small     500 concurrent small uploads
 *   bot       150 users sending a 4 MB photo to /catdog at once
 *   multipart one 24.7 MB form of 480k empty fields (then a file)
 *
 * Throughout, a worker thread asks GET /healthz every 25 ms (its own event loop, so the driver's
 * work does not delay it) and this process samples the server's RSS (/proc/<pid>/status) every
 * 25 ms; the server reports its own event-loop delay (SIGUSR2). Per phase: peak RSS growth over the idle baseline, /healthz p50/p99/max, and what the
 * requests got. Every phase is bounded in count and time (PHASE_MS); the whole run too.
 * `-- --json` prints one JSON object on the last line.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import sharp from 'sharp';
import { FakeDiscord, fakeDiscordEnv, makeUser } from '../test/helpers/fake-discord.ts';

const here = dirname(fileURLToPath(import.meta.url));
const json = process.argv.includes('--json');
const PHASE_MS = 60_000;
const RUN_MS = 300_000;
const MB = 1024 * 1024;

const runTimer = setTimeout(() => {
  console.error(`bench:abuse: over ${RUN_MS / 1000} s; stopping`);
  process.exit(2);
}, RUN_MS);
runTimer.unref();

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function pct(xs: number[], p: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

/** POSTs `body` (all of it, if the server reads it); resolves with the status or the error code. Bounded by `timeoutMs`. */
function post(url: string, body: Buffer, type: string, timeoutMs = PHASE_MS): Promise<string> {
  return new Promise((resolve) => {
    const u = new URL('/api/classify', url);
    let settled = false;
    const done = (v: string) => {
      if (!settled) {
        settled = true;
        resolve(v);
      }
    };
    const req = request({ host: '127.0.0.1', port: u.port, path: u.pathname, method: 'POST', headers: { 'content-type': type, 'content-length': body.length }, timeout: timeoutMs }, (res) => {
      done(String(res.statusCode));
      res.resume();
    });
    req.on('timeout', () => {
      req.destroy();
      done('timeout');
    });
    req.on('error', (e: NodeJS.ErrnoException) => done(e.code ?? 'error'));
    req.end(body);
  });
}

function tally(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

async function waitIdle(url: string): Promise<void> {
  const deadline = Date.now() + PHASE_MS;
  while (Date.now() < deadline) {
    try {
      const h = (await (await fetch(`${url}/healthz`)).json()) as { queue: { waiting: number; running: number } };
      if (h.queue.waiting === 0 && h.queue.running === 0) return;
    } catch {
      /* try again */
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

const SAMPLER = `
const { parentPort, workerData } = require('node:worker_threads');
let on = true; const lat = [];
parentPort.on('message', (m) => { if (m === 'take') { parentPort.postMessage(lat.splice(0)); } if (m === 'stop') on = false; });
(async () => {
  while (on) {
    const t0 = performance.now();
    try { const r = await fetch(workerData + '/healthz', { signal: AbortSignal.timeout(5000) }); await r.arrayBuffer(); lat.push(performance.now() - t0); }
    catch { lat.push(5000); }
    await new Promise((r) => setTimeout(r, 25));
  }
})();`;

async function main(): Promise<void> {
  const fake = await FakeDiscord.start();
  fake.setMaxListeners(10_000);
  const dataDir = join(here, '..', 'data', `bench-abuse-${process.pid}`);
  const env = {
    ...fakeDiscordEnv(fake, dataDir),
    WEB_HOST: '127.0.0.1',
    MAX_IMAGE_BYTES: '25MB',
    // The per-client limit would refuse most uploads (429) before the queue is asked; off, so the
    // admission that is measured is the queue's and the bytes-in-flight cap (the harder case).
    WEB_RATE_BURST: '0',
  };
  // -- --cpu-prof-dir DIR: the server writes a V8 CPU profile there (to find what blocks its loop).
  const profDir = process.argv[process.argv.indexOf('--cpu-prof-dir') + 1];
  const prof = process.argv.includes('--cpu-prof-dir') && profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [];
  // The server's classifier takes 1500 ms a photo, so the queue stays busy during a phase.
  const child = spawn(process.execPath, [...prof, '--import', 'tsx', join(here, 'bench-abuse-server.ts'), '1500'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error('the server did not start in 60 s')), 60_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /ready (\S+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
    child.on('exit', (code) => reject(new Error(`the server exited (${code})`)));
  });
  const pid = child.pid!;
  let eldLine: ((v: number) => void) | null = null;
  child.stdout!.on('data', (d) => {
    const m = /eld (\d+(?:\.\d+)?)/.exec(String(d));
    if (m && eldLine) eldLine(Number(m[1]));
  });
  /** The server's own event-loop delay, max since the last ask (ms), from its monitor. */
  const serverLoopDelay = () =>
    new Promise<number>((resolve) => {
      const t = setTimeout(() => resolve(NaN), 2000);
      eldLine = (v) => {
        clearTimeout(t);
        resolve(Math.round(v));
      };
      child.kill('SIGUSR2');
    });
  const sampler = new Worker(SAMPLER, { eval: true, workerData: url });
  const take = () => new Promise<number[]>((r) => { sampler.once('message', r); sampler.postMessage('take'); });

  const small = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 200, g: 60, b: 40 } } }).png().toBuffer();
  const noise = Buffer.alloc(1200 * 1200 * 3);
  for (let k = 0; k < noise.length; k++) noise[k] = (k * 2654435761) >>> 24;
  const fourMb = await sharp(noise, { raw: { width: 1200, height: 1200, channels: 3 } }).png({ compressionLevel: 0 }).toBuffer();
  const twentyMb = Buffer.concat([small, Buffer.alloc(20 * MB - small.length)]);
  const boundary = 'b';
  const field = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="x"\r\n\r\n\r\n`);
  const flood = Buffer.concat([
    Buffer.concat(Array.from({ length: 480_000 }, () => field)),
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="photo"; filename="p.png"\r\nContent-Type: image/png\r\n\r\n`),
    small,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);

  await new Promise((r) => setTimeout(r, 2000));
  await take();
  const baseline = rssMb(pid);
  const results: Record<string, unknown> = { baselineRssMb: Math.round(baseline) };

  async function phase(name: string, run: () => Promise<unknown>): Promise<void> {
    await waitIdle(url);
    await new Promise((r) => setTimeout(r, 3500)); // the web client's rate bucket refills a little
    await take();
    await serverLoopDelay();
    let peak = rssMb(pid);
    const rss = setInterval(() => (peak = Math.max(peak, rssMb(pid))), 25);
    const t0 = performance.now();
    const outcome = await Promise.race([run(), new Promise((r) => setTimeout(() => r('phase time limit reached'), PHASE_MS))]);
    const ms = performance.now() - t0;
    clearInterval(rss);
    const lat = await take();
    const eld = await serverLoopDelay();
    const row = {
      serverLoopDelayMaxMs: eld,
      rssGrowthMb: Math.round(peak - baseline),
      peakRssMb: Math.round(peak),
      healthzP50Ms: Math.round(pct(lat, 50)),
      healthzP99Ms: Math.round(pct(lat, 99)),
      healthzMaxMs: Math.round(Math.max(...lat)),
      healthzSamples: lat.length,
      seconds: Math.round(ms / 100) / 10,
      outcome,
    };
    results[name] = row;
    if (!json) console.log(`${name.padEnd(10)} RSS +${row.rssGrowthMb} MB (peak ${row.peakRssMb} MB)  /healthz p50 ${row.healthzP50Ms} ms p99 ${row.healthzP99Ms} ms max ${row.healthzMaxMs} ms (${row.healthzSamples}); server loop delay max ${row.serverLoopDelayMaxMs} ms  ${row.seconds} s  ${JSON.stringify(outcome)}`);
  }

  await phase('uploads', async () => {
    // Busy first: small uploads fill the queue (each takes 1.5 s to classify), then 60 x 20 MB.
    const fill = Array.from({ length: 40 }, () => post(url, small, 'image/png'));
    await new Promise((r) => setTimeout(r, 500));
    const big = await Promise.all(Array.from({ length: 60 }, () => post(url, twentyMb, 'image/png')));
    await Promise.all(fill);
    return tally(big);
  });

  await phase('small', async () => tally(await Promise.all(Array.from({ length: 500 }, () => post(url, small, 'image/png')))));

  await phase('bot', async () => {
    const asks = Array.from({ length: 150 }, (_, k) => {
      const att = fake.attachment(`p${k}.png`, fourMb, { contentType: 'image/png' });
      const i = fake.slashCommand('catdog', { user: makeUser(`u${k}`), options: [{ name: 'image', type: 11, value: att.id }], attachments: [att] });
      return { i, att };
    });
    const answers = await Promise.all(
      asks.map(async ({ i }) => {
        try {
          const edit = await fake.waitForRequest((r) => r.method === 'PATCH' && r.path.endsWith(`/${i.token}/messages/@original`), { timeoutMs: PHASE_MS });
          return edit.body?.embeds?.length ? 'answered' : /busy/.test(edit.body?.content ?? '') ? 'busy' : 'other';
        } catch {
          return 'no answer in time';
        }
      }),
    );
    return { ...tally(answers), downloads: asks.reduce((n, a) => n + fake.downloads(a.att), 0) };
  });

  await phase('multipart', async () => tally(await Promise.all([post(url, flood, `multipart/form-data; boundary=${boundary}`)])));

  sampler.postMessage('stop');
  await sampler.terminate();
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  await fake.close();
  const { rmSync } = await import('node:fs');
  rmSync(dataDir, { recursive: true, force: true });
  if (json) console.log(JSON.stringify(results));
  else console.log(`baseline RSS ${results.baselineRssMb} MB; targets: RSS growth <= 150 MB, /healthz p99 <= 100 ms (2 shared cores: figures are noisy)`);
}

await main();
