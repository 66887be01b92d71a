/**
 * The web door, in the bot's process: `/` the upload page, `POST /api/classify` (image bytes in,
 * JSON out), `GET /healthz`, `GET /metrics` (Prometheus text format). Same queue, same limits,
 * same words for errors as the bot.
 *
 * An upload is admitted before a byte of its body is read, in this order: the shutdown gate, the
 * per-client rate limit (429 + Retry-After), a place in the queue (503 + Retry-After: busy), the
 * cap on upload bytes in flight (503), the byte limit from Content-Length (413). Only then is the
 * body read (counted, at most MAX_IMAGE_BYTES). The server caps open connections and the time a
 * request may take; a shutdown ends uploads still arriving instead of waiting for them.
 * Multipart bodies are parsed here, stopping at the first file (at most a few fields before it).
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config.ts';
import { Busy, CatdogError, errorFacts, ImageTooLarge, isExpected, RateLimited, ShuttingDown, UnsupportedImage } from '../errors.ts';
import type { BackboneName } from '../model/types.ts';
import type { Admission, ClassifyDoor, WorkGate } from '../queue.ts';
import { MemoryRateLimiter } from '../rate-limit.ts';
import { describeError } from '../error-words.ts';
import { outcomeOf, type Metrics, type Outcome } from '../metrics.ts';
import { PAGE_CSS, PAGE_HTML, PAGE_JS } from './page.ts';

export interface ModelInfo {
  backbones: BackboneName[] | string[];
  model: string | null;
  loadMs: number;
}

export interface WebDeps {
  config: Pick<Config, 'limits' | 'web'>;
  classifier: ClassifyDoor;
  /** More of /healthz (distributed: Redis and the live workers); `ok: false` answers 503. */
  health?: () => Promise<{ ok: boolean } & Record<string, unknown>>;
  metrics: Metrics;
  gate: WorkGate;
  modelInfo: () => ModelInfo;
  /** null when no bot is configured. */
  discordConnected: () => boolean | null;
  log: (line: string) => void;
}

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

function send(res: ServerResponse, status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...SECURITY_HEADERS, ...extra });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
  send(res, status, 'application/json; charset=utf-8', JSON.stringify(body), extra);
}

/** Reads the request body, refusing more than `maxBytes` while reading; rejects with ShuttingDown when `signal` aborts. */
async function readBody(req: IncomingMessage, maxBytes: number, signal: AbortSignal): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  const aborted = new Promise<never>((_, reject) => {
    if (signal.aborted) reject(new ShuttingDown());
    signal.addEventListener('abort', () => reject(new ShuttingDown()), { once: true });
  });
  aborted.catch(() => undefined);
  const read = (async () => {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > maxBytes) throw new ImageTooLarge(total, maxBytes);
      chunks.push(chunk);
    }
    return Buffer.concat(chunks, total);
  })();
  read.catch(() => undefined);
  return Promise.race([read, aborted]);
}

/** Fields a multipart upload may have before its file. */
const MAX_FORM_PARTS = 8;
const CRLF = Buffer.from('\r\n');

/**
 * The first file of a multipart/form-data body (curl -F), found with a few indexOf() calls: at
 * most MAX_FORM_PARTS parts are looked at, so a flood of empty fields costs microseconds.
 */
export function firstFormFile(body: Buffer, contentType: string): Uint8Array {
  const m = /boundary=(?:"([^"]{1,70})"|([^\s;]{1,70}))/i.exec(contentType);
  const invalid = () => new UnsupportedImage('The upload is not valid multipart/form-data.');
  if (!m) throw invalid();
  const boundary = Buffer.from(`--${m[1] ?? m[2]}`);
  const delimiter = Buffer.concat([CRLF, boundary]);
  let pos = body.indexOf(boundary);
  if (pos < 0) throw invalid();
  for (let part = 0; part < MAX_FORM_PARTS; part++) {
    pos += boundary.length;
    if (body[pos] === 0x2d && body[pos + 1] === 0x2d) break; // "--": the end
    if (body[pos] !== 0x0d || body[pos + 1] !== 0x0a) throw invalid();
    pos += 2;
    const headerEnd = body.indexOf('\r\n\r\n', pos);
    if (headerEnd < 0 || headerEnd - pos > 8192) throw invalid();
    const headers = body.subarray(pos, headerEnd).toString('latin1');
    const start = headerEnd + 4;
    const end = body.indexOf(delimiter, start);
    if (end < 0) throw invalid();
    if (/^content-disposition:[^\r\n]*;\s*filename\*?=/im.test(headers)) return body.subarray(start, end);
    pos = end + 2;
  }
  throw new UnsupportedImage(
    `The form has no file in its first ${MAX_FORM_PARTS} fields. Send the photo as a file field (or as the raw request body).`,
  );
}

/** Upload bytes being read at once, across clients. */
class BytesInFlight {
  private used = 0;
  constructor(private readonly limit: number) {}
  /** Reserves `n` bytes; false when that would pass the limit. */
  take(n: number): boolean {
    if (this.used + n > this.limit) return false;
    this.used += n;
    return true;
  }
  give(n: number): void {
    this.used -= n;
  }
}

export interface WebServer extends Server {
  /** Ends the uploads still arriving (answered 503 "restarting"); requests already classifying finish. */
  abortUploads(): void;
}

export function createWebServer(deps: WebDeps): WebServer {
  const { metrics, gate, classifier, config, log } = deps;
  const perClient = new MemoryRateLimiter(config.web.rate);
  const inFlight = new BytesInFlight(config.web.maxBytesInFlight);
  const uploads = new Set<AbortController>();

  async function classify(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    let outcome: Outcome = 'ok';
    let leave: (() => void) | null = null;
    let ticket: Admission | null = null;
    let reserved = 0;
    const upload = new AbortController();
    try {
      leave = gate.enter();
      // Everything below, up to readBody, decides from the headers alone: no byte of the body is read.
      const client = req.socket.remoteAddress ?? 'unknown';
      const rate = perClient.takeSync(client);
      if (!rate.allowed) throw new RateLimited(rate.retryAfterMs);
      const { maxImageBytes } = config.limits;
      const declared = Number(req.headers['content-length']);
      const known = req.headers['content-length'] !== undefined && Number.isFinite(declared);
      if (known && declared > maxImageBytes) throw new ImageTooLarge(declared, maxImageBytes);
      ticket = await classifier.admit(`web:${client}`);
      reserved = known ? declared : maxImageBytes;
      if (!inFlight.take(reserved)) {
        reserved = 0;
        throw new Busy();
      }
      uploads.add(upload);
      const body = await readBody(req, maxImageBytes, upload.signal);
      uploads.delete(upload);
      const type = String(req.headers['content-type'] ?? '');
      const bytes = /^multipart\/form-data/i.test(type) ? firstFormFile(body, type) : body;
      const p = await ticket.run(bytes);
      metrics.classified(p.label);
      sendJson(res, 200, {
        label: p.label,
        dog: p.dog,
        dogPercent: Math.round(p.dog * 100),
        backbones: p.backbones,
        precision: p.precision,
        model: p.model,
        imagenetTop: p.imagenetTop,
        timings: p.timings,
        elapsedMs: Math.round(performance.now() - started),
      });
    } catch (err) {
      outcome = err instanceof ShuttingDown ? 'shutting_down' : outcomeOf(err);
      if (!isExpected(err)) log(`web: /api/classify error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      const code = err instanceof CatdogError ? err.code : 'internal';
      const status = errorFacts(err).http;
      const extra: Record<string, string> =
        err instanceof RateLimited ? { 'retry-after': String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))) } : status === 503 ? { 'retry-after': code === 'busy' ? '5' : '30' } : {};
      // Unread upload left on the socket (refused early): do not keep the connection.
      if (!req.complete) extra.connection = 'close';
      sendJson(res, status, { error: code, message: describeError(err) }, extra);
      if (!req.complete) res.on('finish', () => req.destroy());
    } finally {
      uploads.delete(upload);
      ticket?.release();
      if (reserved) inFlight.give(reserved);
      metrics.observe('web', outcome, (performance.now() - started) / 1000);
      leave?.();
    }
  }

  // Timeouts are checked every second (Node's default is every 30 s), so a slow upload ends on time.
  const server = createServer({ connectionsCheckingInterval: 1000 }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const route = `${req.method} ${path}`;
    switch (route) {
      case 'GET /':
      case 'HEAD /':
        return send(res, 200, 'text/html; charset=utf-8', PAGE_HTML, {
          'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
        });
      case 'GET /app.js':
        return send(res, 200, 'text/javascript; charset=utf-8', PAGE_JS);
      case 'GET /favicon.ico':
        res.writeHead(204, { 'cache-control': 'max-age=86400' });
        res.end();
        return;
      case 'GET /app.css':
        return send(res, 200, 'text/css; charset=utf-8', PAGE_CSS);
      case 'POST /api/classify':
        void classify(req, res);
        return;
      case 'GET /healthz':
        void (async () => {
          const extra = deps.health ? await deps.health().catch((err) => ({ ok: false, error: String(err) })) : { ok: true };
          const info = deps.modelInfo();
          const discord = deps.discordConnected();
          const status = gate.isClosed ? 'shutting_down' : extra.ok ? 'ok' : 'degraded';
          const { ok: _ok, ...more } = extra;
          const queue = await Promise.resolve(classifier.stats()).catch(() => null);
          sendJson(res, status === 'ok' ? 200 : 503, {
            status,
            model: { loaded: true, backbones: info.backbones, model: info.model, loadMs: Math.round(info.loadMs) },
            discord: { configured: discord !== null, connected: discord === true },
            queue,
            ...more,
          });
        })();
        return;
      case 'GET /metrics':
        if (config.web.metricsToken && !sameSecret(String(req.headers.authorization ?? ''), `Bearer ${config.web.metricsToken}`)) {
          return sendJson(res, 401, { error: 'unauthorized', message: 'GET /metrics needs Authorization: Bearer <METRICS_TOKEN>.' }, { 'www-authenticate': 'Bearer' });
        }
        return send(res, 200, 'text/plain; version=0.0.4; charset=utf-8', metrics.render());
      default:
        if (['/', '/api/classify', '/healthz', '/metrics', '/app.js', '/app.css'].includes(path!)) {
          return sendJson(res, 405, { error: 'method_not_allowed', message: `${req.method} is not allowed here.` });
        }
        return sendJson(res, 404, { error: 'not_found', message: 'Nothing here. Try / or POST /api/classify.' });
    }
  }) as WebServer;
  server.maxConnections = config.web.maxConnections;
  server.requestTimeout = config.web.requestTimeoutMs;
  server.headersTimeout = Math.min(config.web.requestTimeoutMs, 15_000);
  server.abortUploads = () => {
    for (const u of uploads) u.abort();
    uploads.clear();
  };
  return server;
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export interface RunningWeb {
  server: WebServer;
  url: string;
  /** Ends uploads still arriving (the first step of a shutdown). */
  abortUploads(): void;
  close(): Promise<void>;
}

export async function startWeb(deps: WebDeps, port: number, host: string): Promise<RunningWeb> {
  const server = createWebServer(deps);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shownHost = host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host;
  return {
    server,
    url: `http://${shownHost}:${addr.port}`,
    abortUploads: () => server.abortUploads(),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
