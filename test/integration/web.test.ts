/**
 * The web door end to end: src/main.ts without DISCORD_TOKEN (web page only), the real queue and
 * limits, the mean-colour test classifier. Requests go to 127.0.0.1 only.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main, type App } from '../../src/main.ts';
import { LATENCY_BUCKETS } from '../../src/metrics.ts';
import { CATTY, DOGGY, MeanColourTestClassifier, TEST_MODEL_ID, expectedDog, makePhoto } from '../helpers/test-classifier.ts';

const MAX_BYTES = 100 * 1024;
const MAX_PIXELS = 1_000_000;

let app: App;
let url: string;
let classifier: MeanColourTestClassifier;
let dataDir: string;
const logs: string[] = [];

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'catdog-web-'));
  classifier = new MeanColourTestClassifier({ maxBytes: MAX_BYTES, maxPixels: MAX_PIXELS });
  app = await main({
    env: {
      PORT: '0',
      WEB_HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      MAX_IMAGE_BYTES: String(MAX_BYTES),
      MAX_IMAGE_PIXELS: String(MAX_PIXELS),
      QUEUE_SIZE: '0',
      CLASSIFY_CONCURRENCY: '1',
    },
    classifier,
    handleSignals: false,
    log: (l) => logs.push(l),
  });
  url = app.web.url;
});

afterAll(async () => {
  await app?.shutdown('test over');
  rmSync(dataDir, { recursive: true, force: true });
});

async function classify(body: BodyInit, headers: Record<string, string> = { 'content-type': 'image/png' }) {
  const res = await fetch(`${url}/api/classify`, { method: 'POST', body, headers });
  return { status: res.status, headers: res.headers, json: (await res.json()) as any };
}

describe('startup without a token', () => {
  it('runs the web page alone and says so in one line', () => {
    expect(app.bot).toBeNull();
    const lines = logs.filter((l) => l.includes('DISCORD_TOKEN'));
    expect(lines).toEqual([`Discord: no DISCORD_TOKEN, so the bot is off; only the web page runs (${url}/)`]);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });
});

describe('POST /api/classify', () => {
  it('answers JSON for raw image bytes', async () => {
    const { status, json } = await classify(new Uint8Array(await makePhoto(DOGGY)));
    expect(status).toBe(200);
    expect(json).toMatchObject({
      label: 'dog',
      dogPercent: Math.round(expectedDog(DOGGY) * 100),
      backbones: ['resnet50', 'xception'],
      model: TEST_MODEL_ID,
      imagenetTop: [{ label: 'golden retriever' }],
    });
    expect(json.dog).toBeCloseTo(expectedDog(DOGGY), 2);
    expect(json.elapsedMs).toBeGreaterThanOrEqual(0);
  });

  it('takes a multipart/form-data upload (curl -F photo=@cat.jpg)', async () => {
    const form = new FormData();
    form.append('photo', new Blob([new Uint8Array(await makePhoto(CATTY, { format: 'jpeg' }))], { type: 'image/jpeg' }), 'cat.jpg');
    const res = await fetch(`${url}/api/classify`, { method: 'POST', body: form });
    expect(res.status).toBe(200);
    const json = (await res.json()) as any;
    expect(json.label).toBe('cat');
    expect(json.dogPercent).toBe(Math.round(expectedDog(CATTY) * 100));
  });

  it('refuses a non-image (415), too many bytes (413) and too many pixels (413) with a sentence', async () => {
    const text = await classify('<html><body>not a photo</body></html>', { 'content-type': 'image/png' });
    expect(text.status).toBe(415);
    expect(text.json).toEqual({
      error: 'unsupported_image',
      message: "🙀 I can't read that as a photo. This looks like a web page (HTML), not an image. Please send a JPEG, PNG, WebP, GIF or AVIF photo.",
    });

    const big = await classify(new Uint8Array(MAX_BYTES + 1));
    expect(big.status).toBe(413);
    expect(big.json).toEqual({ error: 'image_too_large', message: '📏 That photo is too big for me. The file is 100.0 KB, over the 100.0 KB limit.' });

    const wide = await classify(new Uint8Array(await makePhoto(DOGGY, { width: 1100, height: 1000 })));
    expect(wide.status).toBe(413);
    expect(wide.json.error).toBe('image_dimensions_too_large');
    expect(wide.json.message).toContain('1100x1000 pixels');
  });

  it('answers 503 "busy" with Retry-After when the queue is full, and the first request still completes', async () => {
    const hold = classifier.hold();
    const first = classify(new Uint8Array(await makePhoto(DOGGY)));
    await hold.reached;
    const second = await classify(new Uint8Array(await makePhoto(CATTY)));
    expect(second.status).toBe(503);
    expect(second.headers.get('retry-after')).toBe('5');
    expect(second.json.error).toBe('busy');
    hold.release();
    expect((await first).status).toBe(200);
  });
});

describe('GET /healthz, /metrics, and the rest', () => {
  it('/healthz says the model is loaded and Discord is not configured', async () => {
    const res = await fetch(`${url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      status: 'ok',
      model: { loaded: true, backbones: ['resnet50', 'xception'], model: TEST_MODEL_ID, loadMs: 1 },
      discord: { configured: false, connected: false },
      queue: { waiting: 0, running: 0, size: 0, concurrency: 1 },
    });
  });

  it('/metrics is valid Prometheus text with requests by outcome, a latency histogram and queue depth', async () => {
    const res = await fetch(`${url}/metrics`);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = await res.text();
    expect(text.endsWith('\n')).toBe(true);
    const sample = /^([a-z_:][a-z0-9_:]*)(\{([a-z_][a-z0-9_]*="(?:[^"\\\n]|\\.)*")(,[a-z_][a-z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? (-?[0-9.e+-]+|\+Inf)$/i;
    const typed = new Map<string, string>();
    for (const line of text.trimEnd().split('\n')) {
      const t = /^# TYPE (\S+) (counter|gauge|histogram)$/.exec(line);
      if (t) typed.set(t[1]!, t[2]!);
      else if (!line.startsWith('# HELP ')) expect(line).toMatch(sample);
    }
    expect(typed.get('catdog_requests_total')).toBe('counter');
    expect(typed.get('catdog_request_duration_seconds')).toBe('histogram');
    expect(typed.get('catdog_queue_depth')).toBe('gauge');
    const value = (s: string) => Number(new RegExp(`^${s.replace(/[{}+.]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
    expect(value('catdog_requests_total{surface="web",outcome="ok"}')).toBe(3);
    expect(value('catdog_requests_total{surface="web",outcome="bad_input"}')).toBe(1);
    expect(value('catdog_requests_total{surface="web",outcome="too_large"}')).toBe(2);
    expect(value('catdog_requests_total{surface="web",outcome="busy"}')).toBe(1);
    expect(value('catdog_queue_depth')).toBe(0);
    expect(value('catdog_classifications_total{label="dog"}')).toBe(2);
    // Buckets are cumulative and end in +Inf = count.
    const buckets = LATENCY_BUCKETS.map((b) => value(`catdog_request_duration_seconds_bucket{surface="web",le="${b}"}`));
    for (let k = 1; k < buckets.length; k++) expect(buckets[k]!).toBeGreaterThanOrEqual(buckets[k - 1]!);
    expect(value('catdog_request_duration_seconds_bucket{surface="web",le="+Inf"}')).toBe(7);
    expect(value('catdog_request_duration_seconds_count{surface="web"}')).toBe(7);
    expect(text).not.toMatch(/^catdog_discord_connected /m);
  });

  it('serves the page with a strict CSP, and 404/405 elsewhere', async () => {
    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    const html = await page.text();
    expect(html).toContain('<input type="file" id="photo"');
    expect(html).toContain('<script src="/app.js" defer></script>');
    expect((await fetch(`${url}/app.js`)).headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect((await fetch(`${url}/nope`)).status).toBe(404);
    expect((await fetch(`${url}/api/classify`)).status).toBe(405);
  });
});
