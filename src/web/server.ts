/**
 * The web door, in the bot's process: `/` the upload page, `POST /api/classify` (image bytes in,
 * JSON out), `GET /healthz`, `GET /metrics` (Prometheus text format). Same queue, same limits,
 * same words for errors as the bot.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config.ts';
import { CatdogError, errorFacts, ImageTooLarge, isExpected, ShuttingDown, UnsupportedImage } from '../errors.ts';
import type { BackboneName } from '../model/types.ts';
import type { ClassifyDoor, WorkGate } from '../queue.ts';
import { describeError } from '../error-words.ts';
import { outcomeOf, type Metrics, type Outcome } from '../metrics.ts';
import { PAGE_CSS, PAGE_HTML, PAGE_JS } from './page.ts';

export interface ModelInfo {
  backbones: BackboneName[] | string[];
  model: string | null;
  loadMs: number;
}

export interface WebDeps {
  config: Pick<Config, 'limits'>;
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

/** Reads the request body, refusing more than `maxBytes` (from Content-Length, then while reading). */
async function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) throw new ImageTooLarge(declared, maxBytes);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > maxBytes) throw new ImageTooLarge(total, maxBytes);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

/** The image from the body: raw bytes, or the first file of a multipart/form-data upload (curl -F). */
async function imageFromBody(req: IncomingMessage, body: Buffer): Promise<Uint8Array> {
  const type = String(req.headers['content-type'] ?? '');
  if (!/^multipart\/form-data/i.test(type)) return body;
  let form: FormData;
  try {
    form = await new Request('http://local/', { method: 'POST', headers: { 'content-type': type }, body: new Uint8Array(body) }).formData();
  } catch (err) {
    throw new UnsupportedImage('The upload is not valid multipart/form-data.', { cause: err });
  }
  for (const value of form.values()) {
    if (typeof value !== 'string') return new Uint8Array(await value.arrayBuffer());
  }
  throw new UnsupportedImage('The form has no file in it. Send the photo as a file field (or as the raw request body).');
}

export function createWebServer(deps: WebDeps): Server {
  const { metrics, gate, classifier, config, log } = deps;

  async function classify(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    let outcome: Outcome = 'ok';
    let leave: (() => void) | null = null;
    try {
      leave = gate.enter();
      const body = await readBody(req, config.limits.maxImageBytes);
      const bytes = await imageFromBody(req, body);
      const key = `web:${req.socket.remoteAddress ?? 'unknown'}`;
      const p = await classifier.classify(bytes, { key });
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
      const extra: Record<string, string> = status === 503 ? { 'retry-after': code === 'busy' ? '5' : '30' } : {};
      // Unread upload left on the socket (refused early): do not keep the connection.
      if (!req.complete) extra.connection = 'close';
      sendJson(res, status, { error: code, message: describeError(err) }, extra);
      if (!req.complete) res.on('finish', () => req.destroy());
    } finally {
      metrics.observe('web', outcome, (performance.now() - started) / 1000);
      leave?.();
    }
  }

  return createServer((req, res) => {
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
        return send(res, 200, 'text/plain; version=0.0.4; charset=utf-8', metrics.render());
      default:
        if (['/', '/api/classify', '/healthz', '/metrics', '/app.js', '/app.css'].includes(path!)) {
          return sendJson(res, 405, { error: 'method_not_allowed', message: `${req.method} is not allowed here.` });
        }
        return sendJson(res, 404, { error: 'not_found', message: 'Nothing here. Try / or POST /api/classify.' });
    }
  });
}

export interface RunningWeb {
  server: Server;
  url: string;
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
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
