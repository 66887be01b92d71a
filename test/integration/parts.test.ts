/**
 * Parts of the bot on their own, over real sockets: the intents it asks for and the download rules
 * (against a local HTTP server). Config, queue and store have their unit tests in test/unit/.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GatewayIntentBits } from 'discord.js';
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { botIntents } from '../../src/bot/client.ts';
import { downloadImage } from '../../src/bot/download.ts';
import { DownloadFailed, HostNotAllowed, ImageTooLarge } from '../../src/errors.ts';

describe('intents', () => {
  it('asks for Message Content only when configured to', () => {
    expect(botIntents(true)).toEqual([GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages, GatewayIntentBits.MessageContent]);
    expect(botIntents(false)).toEqual([GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages]);
  });
});

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
