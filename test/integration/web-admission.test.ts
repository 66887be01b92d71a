/**
 * Issue #8, parts 2 and 5, on the web door (src/main.ts without a token, the mean-colour test
 * classifier behind the real queue): an upload is refused from its headers alone, before its
 * body is read (busy, per-client rate limit, bytes in flight); a form flood is refused after a few
 * fields; a slow upload is cut off by the request timeout, and a shutdown ends it instead of
 * waiting; /metrics can need a token. Raw sockets on 127.0.0.1 send headers without the body they
 * announce, so "answered before the body" is what is checked.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main, type App } from '../../src/main.ts';
import { DOGGY, MeanColourTestClassifier, makePhoto } from '../helpers/test-classifier.ts';

const MAX_BYTES = 200 * 1024;

let app: App;
let classifier: MeanColourTestClassifier;
let dataDir: string;
let port: number;

function env(dir: string): Record<string, string> {
  return {
    PORT: '0',
    DATA_DIR: dir,
    MAX_IMAGE_BYTES: String(MAX_BYTES),
    QUEUE_SIZE: '4',
    GUILD_QUEUE_SIZE: '4',
    CLASSIFY_CONCURRENCY: '1',
    GUILD_CONCURRENCY: '1',
    WEB_MAX_BYTES_IN_FLIGHT: String(300 * 1024),
    WEB_REQUEST_TIMEOUT_SECONDS: '2',
    WEB_RATE_BURST: '1000',
    METRICS_TOKEN: 'let-me-see-1234',
  };
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'catdog-webadm-'));
  classifier = new MeanColourTestClassifier({ maxBytes: MAX_BYTES });
  app = await main({ env: env(dataDir), classifier, handleSignals: false, log: () => {} });
  port = Number(new URL(app.web.url).port);
});

afterAll(async () => {
  await app?.shutdown('test over');
  rmSync(dataDir, { recursive: true, force: true });
});

interface RawAnswer {
  status: number | null;
  head: string;
  body: string;
  /** The server closed the connection. */
  closed: boolean;
}

/**
 * POSTs `declared` bytes' worth of headers and only `sent` of the body, then waits (at most
 * `waitMs`) for the answer or the connection to close. The rest of the body is never sent.
 */
function rawUpload(p: number, o: { declared: number; sent?: Buffer; waitMs?: number; type?: string }): { answer: Promise<RawAnswer>; end(): void } {
  const socket = connect(p, '127.0.0.1');
  let data = '';
  const answer = new Promise<RawAnswer>((resolve) => {
    const done = (closed: boolean) => {
      clearTimeout(timer);
      const [head = '', body = ''] = data.split('\r\n\r\n');
      const status = /^HTTP\/1\.1 (\d{3})/.exec(head);
      resolve({ status: status ? Number(status[1]) : null, head, body, closed });
    };
    const timer = setTimeout(() => done(false), o.waitMs ?? 5000);
    socket.on('data', (d) => (data += d.toString('latin1')));
    socket.on('close', () => done(true));
    socket.on('error', () => undefined);
  });
  socket.write(`POST /api/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${o.type ?? 'image/png'}\r\nContent-Length: ${o.declared}\r\n\r\n`);
  if (o.sent) socket.write(o.sent);
  return { answer, end: () => socket.destroy() };
}

async function upload(bytes: Buffer, headers: Record<string, string> = { 'content-type': 'image/png' }) {
  const res = await fetch(`${app.web.url}/api/classify`, { method: 'POST', body: new Uint8Array(bytes), headers });
  return { status: res.status, headers: res.headers, json: (await res.json()) as any };
}

describe('admission before the body', () => {
  it('answers 503 busy (with Retry-After) from the headers alone when the queue has no place', async () => {
    const photo = await makePhoto(DOGGY);
    const holds = Array.from({ length: 5 }, () => classifier.hold());
    const admitted = holds.map(() => upload(photo));
    await holds[0]!.reached;
    await expect.poll(() => app.services.classifier.stats()).toMatchObject({ running: 1, waiting: 4 });
    const refused = rawUpload(port, { declared: 150 * 1024 });
    const answer = await refused.answer;
    refused.end();
    expect(answer.status).toBe(503);
    expect(answer.head).toMatch(/\r\nretry-after: 5\r\n/i);
    expect(JSON.parse(answer.body.slice(answer.body.indexOf('{'), answer.body.lastIndexOf('}') + 1)).error).toBe('busy');
    for (const h of holds) h.release();
    for (const r of await Promise.all(admitted)) expect(r.status).toBe(200);
  });

  it('caps upload bytes in flight: past WEB_MAX_BYTES_IN_FLIGHT the next upload is refused before its body', async () => {
    const slow = rawUpload(port, { declared: 200 * 1024, sent: Buffer.alloc(1024), waitMs: 10_000 });
    await expect.poll(() => app.services.gate.inFlight).toBe(1);
    const second = rawUpload(port, { declared: 150 * 1024 });
    const answer = await second.answer;
    second.end();
    expect(answer.status).toBe(503);
    slow.end();
    await expect.poll(() => app.services.gate.inFlight).toBe(0);
    // Freed again: a small upload goes through.
    expect((await upload(await makePhoto(DOGGY))).status).toBe(200);
  });

  it('cuts off an upload slower than WEB_REQUEST_TIMEOUT_SECONDS', async () => {
    const slow = rawUpload(port, { declared: 100 * 1024, sent: Buffer.alloc(10), waitMs: 15_000 });
    const answer = await slow.answer;
    expect(answer.closed).toBe(true);
    expect(answer.status === null || answer.status === 408).toBe(true);
    expect(app.web.server.maxConnections).toBe(64);
  }, 20_000);
});

describe('multipart', () => {
  it('takes a form with a field and a file, and refuses a flood of fields before any file', async () => {
    const photo = await makePhoto(DOGGY);
    const form = new FormData();
    form.append('note', 'hello');
    form.append('photo', new Blob([new Uint8Array(photo)], { type: 'image/png' }), 'rex.png');
    const ok = await fetch(`${app.web.url}/api/classify`, { method: 'POST', body: form });
    expect(ok.status).toBe(200);

    const boundary = 'flood';
    const field = `--${boundary}\r\nContent-Disposition: form-data; name="x"\r\n\r\n\r\n`;
    const flood = Buffer.concat([
      Buffer.from(field.repeat(3000)),
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="photo"; filename="rex.png"\r\nContent-Type: image/png\r\n\r\n`),
      photo,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const r = await upload(flood, { 'content-type': `multipart/form-data; boundary=${boundary}` });
    expect(r.status).toBe(415);
    expect(r.json.message).toMatch(/The form has no file in its first 8 fields/);
  });
});

describe('per-client rate limit and the /metrics token', () => {
  it('answers 429 with Retry-After past WEB_RATE_BURST; /metrics needs the token when METRICS_TOKEN is set', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'catdog-webadm2-'));
    const second = await main({ env: { ...env(dir), WEB_RATE_BURST: '3', WEB_RATE_REFILL_SECONDS: '3600', WEB_REQUEST_TIMEOUT_SECONDS: '600' }, classifier, handleSignals: false, log: () => {} });
    try {
      const photo = await makePhoto(DOGGY);
      const statuses: number[] = [];
      for (let k = 0; k < 4; k++) {
        const res = await fetch(`${second.web.url}/api/classify`, { method: 'POST', body: new Uint8Array(photo), headers: { 'content-type': 'image/png' } });
        statuses.push(res.status);
        if (res.status === 429) {
          expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(3000);
          expect((await res.json()).message).toMatch(/^⏳ Too many photos from you in a short time\. Please try again in \d+ s\.$/);
        } else await res.arrayBuffer();
      }
      expect(statuses).toEqual([200, 200, 200, 429]);

      expect((await fetch(`${second.web.url}/metrics`)).status).toBe(401);
      const metrics = await fetch(`${second.web.url}/metrics`, { headers: { authorization: 'Bearer let-me-see-1234' } });
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toMatch(/catdog_requests_total\{surface="web",outcome="cooldown"\} 1/);

    } finally {
      await second.shutdown('test over');
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

describe('shutdown', () => {
  it('ends an upload still arriving (503 "restarting") instead of waiting for it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'catdog-webadm3-'));
    const third = await main({ env: { ...env(dir), WEB_REQUEST_TIMEOUT_SECONDS: '600' }, classifier, handleSignals: false, log: () => {} });
    try {
      // It would take up to 600 s to arrive; the rest of the body never comes.
      const slow = rawUpload(Number(new URL(third.web.url).port), { declared: 100 * 1024, sent: Buffer.alloc(10), waitMs: 20_000 });
      await expect.poll(() => third.services.gate.inFlight).toBe(1);
      expect(await third.shutdown('test')).toBe(0);
      const answer = await slow.answer;
      expect(answer.status).toBe(503);
      expect(answer.closed).toBe(true);
      expect(JSON.parse(answer.body.slice(answer.body.indexOf('{'), answer.body.lastIndexOf('}') + 1)).error).toBe('shutting_down');
    } finally {
      await third.shutdown('test over');
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
