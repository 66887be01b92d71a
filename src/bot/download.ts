/**
 * The one download function: an image URL → its bytes, or a typed refusal.
 *
 * - only hosts on the allowlist (ATTACHMENT_HOSTS: Discord's CDN by default), for the first URL and
 *   for every redirect; https, or plain http for a loopback host (a local proxy, our tests);
 * - a byte limit (from Content-Length when the server sends one, and counted while reading);
 * - a time limit for the whole download, and the caller's AbortSignal.
 * What the bytes are is decided from the bytes later (vision/decode.ts), never from a header.
 */
import { request } from 'undici';
import { DownloadFailed, HostNotAllowed, ImageTooLarge } from '../errors.ts';

export interface DownloadOptions {
  allowedHosts: readonly string[];
  maxBytes: number;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Redirects followed (each to an allowed host); default 3. */
  maxRedirects?: number;
}

const LOOPBACK = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])$/;

/** Checks a URL against the allowlist; returns it parsed. */
export function checkImageUrl(raw: string, allowedHosts: readonly string[]): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new DownloadFailed('That is not a link I can open. Give a full https:// link to the image, or upload the photo.');
  }
  const host = url.hostname.toLowerCase();
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new DownloadFailed(`I only open https:// links, not ${url.protocol.slice(0, -1)}: ones.`);
  }
  if (!allowedHosts.includes(host)) throw new HostNotAllowed(host, allowedHosts);
  if (url.protocol === 'http:' && !LOOPBACK.test(host)) {
    throw new DownloadFailed('I only open https:// links.');
  }
  if (url.username || url.password) throw new DownloadFailed('Links with a user name or password are not accepted.');
  return url;
}

function statusWords(status: number): string {
  if (status === 403 || status === 404 || status === 410) {
    return `The image link has expired or the file is gone (HTTP ${status}). Upload the photo again.`;
  }
  return `The image server answered HTTP ${status}; I could not get the photo.`;
}

/** Downloads an image (see the module comment for the rules). */
export async function downloadImage(raw: string, options: DownloadOptions): Promise<Uint8Array> {
  const { allowedHosts, maxBytes, timeoutMs } = options;
  const maxRedirects = options.maxRedirects ?? 3;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  let url = checkImageUrl(raw, allowedHosts);
  try {
    for (let hop = 0; ; hop++) {
      const res = await request(url, {
        method: 'GET',
        signal,
        headers: { accept: 'image/*', 'user-agent': 'catdog-bot' },
      });
      if (res.statusCode >= 300 && res.statusCode < 400 && res.headers.location) {
        await res.body.dump();
        if (hop >= maxRedirects) throw new DownloadFailed('The image link redirects too many times.');
        const location = Array.isArray(res.headers.location) ? res.headers.location[0]! : res.headers.location;
        url = checkImageUrl(new URL(location, url).toString(), allowedHosts);
        continue;
      }
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw new DownloadFailed(statusWords(res.statusCode));
      }
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > maxBytes) {
        res.body.destroy();
        throw new ImageTooLarge(declared, maxBytes);
      }
      const chunks: Buffer[] = [];
      let total = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        total += chunk.length;
        if (total > maxBytes) {
          res.body.destroy();
          throw new ImageTooLarge(total, maxBytes);
        }
        chunks.push(chunk);
      }
      return new Uint8Array(Buffer.concat(chunks, total));
    }
  } catch (err) {
    if (err instanceof DownloadFailed || err instanceof HostNotAllowed || err instanceof ImageTooLarge) throw err;
    if (timeout.aborted) {
      throw new DownloadFailed(`The image took longer than ${Math.round(timeoutMs / 1000)} s to download.`, { cause: err });
    }
    if (options.signal?.aborted) throw options.signal.reason;
    const detail = err instanceof Error ? ((err as { code?: string }).code ?? err.message) : String(err);
    throw new DownloadFailed(`I could not download the image (${detail}).`, { cause: err });
  }
}
