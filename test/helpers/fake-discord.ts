/**
 * A fake Discord on 127.0.0.1 for end-to-end tests with the real discord.js Client:
 *
 * - REST under /api/v10: GET /gateway/bot (points at our own WebSocket), application commands
 *   (GET/PUT, global and guild), interaction callbacks, webhook edits/deletes/follow-ups, channel
 *   messages and reactions. Every request is recorded (path segments percent-decoded, JSON or
 *   multipart payload_json parsed, multipart files kept); a 429 can be injected for the next
 *   matching request. The messages the bot posts and edits are kept (by id), so a test can press
 *   a button on one of them (a component interaction).
 * - A CDN under /attachments/… serving the files a test registered (and 404 for the rest).
 * - The gateway under /gateway: HELLO, IDENTIFY → READY + one GUILD_CREATE per guild, heartbeat
 *   ACKs, dispatches with sequence numbers, dropConnection() and RESUME with replay of what the
 *   client missed.
 *
 * Nothing here listens beyond loopback; every wait is bounded by a timeout.
 */
import { EventEmitter, once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PermissionFlagsBits } from 'discord.js';
import { WebSocketServer, type WebSocket } from 'ws';

export const APP_ID = '900000000000000001';
export const BOT_TOKEN = 'fake.bot.token';

export interface RecordedRequest {
  seq: number;
  method: string;
  /** Path without /api/v10, each segment percent-decoded, e.g. /channels/1/messages/2/reactions/🐶/@me */
  path: string;
  rawPath: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  /** Parsed JSON (or multipart payload_json), else null. */
  body: any;
  /** Files of a multipart request (attachments), in order. */
  files: { field: string; name: string; bytes: Buffer }[];
  status: number;
}

export interface FakeUser {
  id: string;
  username: string;
  global_name?: string | null;
  discriminator: string;
  avatar: null;
  bot?: boolean;
}

export interface FakeChannel {
  id: string;
  name: string;
  type: number;
}

export interface FakeGuild {
  id: string;
  name: string;
  channels: FakeChannel[];
  /** Permissions of @everyone (and so of the bot, which has no other role). */
  everyonePermissions: bigint;
  /** Roles besides @everyone (members get them through `roles` on an interaction). */
  roles?: { id: string; name: string }[];
}

interface StoredFile {
  bytes: Buffer;
  contentType: string;
}

interface RateLimit {
  method: string;
  path: RegExp;
  retryAfterS: number;
  remaining: number;
}

interface GatewayEvent {
  s: number;
  t: string;
  d: unknown;
}

interface ShardSession {
  socket: WebSocket | null;
  sessionId: string | null;
  seq: number;
  events: GatewayEvent[];
  /** Highest sequence the current connection has been sent. */
  delivered: number;
  ready: boolean;
}

let snowflakeCounter = 0n;
/** Unique, increasing snowflake-like ids. */
export function snowflake(): string {
  snowflakeCounter++;
  return (1_200_000_000_000_000_000n + BigInt(Date.now()) * 1000n + snowflakeCounter).toString();
}

export const DEFAULT_PERMISSIONS =
  PermissionFlagsBits.ViewChannel |
  PermissionFlagsBits.SendMessages |
  PermissionFlagsBits.EmbedLinks |
  PermissionFlagsBits.AttachFiles |
  PermissionFlagsBits.AddReactions |
  PermissionFlagsBits.ReadMessageHistory |
  PermissionFlagsBits.UseApplicationCommands;

export function makeUser(name: string, id = snowflake()): FakeUser {
  return { id, username: name, global_name: name, discriminator: '0', avatar: null };
}

export interface FakeDiscordOptions {
  guilds?: FakeGuild[];
  heartbeatIntervalMs?: number;
  /** Intent bits this application is not allowed (IDENTIFY with any of them: close 4014, like Discord). */
  disallowedIntents?: number;
  /** What GET /gateway/bot recommends (`shards`, default 1) and its session start limit. */
  recommendedShards?: number;
  sessionStartLimit?: Partial<SessionStartLimit>;
}

export interface SessionStartLimit {
  total: number;
  remaining: number;
  reset_after: number;
  max_concurrency: number;
}

/** A guild whose id routes it to `shard` of `count`: (id >> 22) % count. */
export function guildOnShard(shard: number, name: string, count = 2): FakeGuild {
  const id = (((1_000_000n * BigInt(count) + BigInt(shard)) << 22n) + 12345n).toString();
  return {
    id,
    name,
    channels: [{ id: `${id.slice(0, -3)}901`, name: 'general', type: 0 }],
    everyonePermissions: DEFAULT_PERMISSIONS,
  };
}

/**
 * The environment that points catdog at a fake Discord (REST, gateway and CDN on 127.0.0.1) with
 * the web page on a free port; tests add or override what they need.
 */
export function fakeDiscordEnv(fake: FakeDiscord, dataDir: string): Record<string, string> {
  return {
    DISCORD_TOKEN: fake.token,
    DISCORD_APP_ID: fake.appId,
    DISCORD_GUILD_ID: fake.guild().id,
    DISCORD_API_URL: fake.apiUrl,
    ATTACHMENT_HOSTS: '127.0.0.1',
    PORT: '0',
    WEB_HOST: '127.0.0.1',
    DATA_DIR: dataDir,
  };
}

export class FakeDiscord extends EventEmitter {
  readonly appId = APP_ID;
  readonly token = BOT_TOKEN;
  readonly botUser: FakeUser = { id: APP_ID, username: 'catdog', discriminator: '0', avatar: null, bot: true, global_name: null };
  readonly guilds: FakeGuild[];
  readonly requests: RecordedRequest[] = [];
  readonly identifies: any[] = [];
  readonly resumes: any[] = [];
  heartbeats = 0;
  /** Registered commands by scope: 'global' or a guild id. */
  readonly commands = new Map<string, any[]>();
  heartbeatIntervalMs: number;
  disallowedIntents: number;
  /** GET /gateway/bot's `shards` and `session_start_limit` (a test may change them). */
  recommendedShards: number;
  sessionStartLimit: SessionStartLimit;
  /** The application's owner (GET /applications/@me); `team` set instead for a team-owned app. */
  owner: FakeUser = makeUser('owner');
  team: { id: string; name: string; ownerUserId: string; members: { user: FakeUser; state: 1 | 2; role: string }[] } | null = null;

  private server!: Server;
  private wss!: WebSocketServer;
  private port = 0;
  /** Gateway sessions by shard id. */
  private readonly sessions = new Map<number, ShardSession>();
  /** Shards in all, as the clients identify (1 until one says otherwise). */
  shardCount = 1;
  private readonly files = new Map<string, StoredFile>();
  private readonly rateLimits: RateLimit[] = [];
  private requestSeq = 0;

  private constructor(options: FakeDiscordOptions) {
    super();
    this.setMaxListeners(100);
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? 41_250;
    this.disallowedIntents = options.disallowedIntents ?? 0;
    this.recommendedShards = options.recommendedShards ?? 1;
    this.sessionStartLimit = { total: 1000, remaining: 999, reset_after: 60_000, max_concurrency: 1, ...options.sessionStartLimit };
    this.guilds = options.guilds ?? [
      {
        id: snowflake(),
        name: 'Pet Lovers',
        channels: [
          { id: snowflake(), name: 'general', type: 0 },
          { id: snowflake(), name: 'pets', type: 0 },
          { id: snowflake(), name: 'quiet', type: 0 },
        ],
        everyonePermissions: DEFAULT_PERMISSIONS,
      },
    ];
  }

  static async start(options: FakeDiscordOptions = {}): Promise<FakeDiscord> {
    const fake = new FakeDiscord(options);
    await fake.listen();
    return fake;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** What DISCORD_API_URL is set to (discord.js appends /v10). */
  get apiUrl(): string {
    return `${this.baseUrl}/api`;
  }

  get gatewayUrl(): string {
    return `ws://127.0.0.1:${this.port}/gateway`;
  }

  get connected(): boolean {
    const all = [...this.sessions.values()];
    return all.length > 0 && all.every((sess) => sess.socket !== null && sess.ready);
  }

  guild(i = 0): FakeGuild {
    return this.guilds[i]!;
  }

  channel(name: string, guild = this.guild()): FakeChannel {
    const c = guild.channels.find((ch) => ch.name === name);
    if (!c) throw new Error(`no channel #${name}`);
    return c;
  }

  // ------------------------------------------------------------------ files (the CDN)

  /** Serves `bytes` at a CDN-like URL on this server and returns an attachment object for it. */
  attachment(
    filename: string,
    bytes: Buffer,
    meta: { contentType?: string | null; width?: number; height?: number; size?: number; host?: string } = {},
  ): any {
    const id = snowflake();
    const path = `/attachments/${id}/${encodeURIComponent(filename)}`;
    this.files.set(path, { bytes, contentType: meta.contentType ?? 'application/octet-stream' });
    const host = meta.host ?? '127.0.0.1';
    const url = `http://${host}:${this.port}${path}?ex=67a0b1c2&is=679f6042&hm=signed`;
    return {
      id,
      filename,
      size: meta.size ?? bytes.length,
      url,
      proxy_url: url,
      ...(meta.contentType !== null ? { content_type: meta.contentType ?? 'application/octet-stream' } : {}),
      ...(meta.width ? { width: meta.width, height: meta.height } : {}),
    };
  }

  /** How many times a file was downloaded. */
  downloads(attachment: { id: string }): number {
    return this.requests.filter((r) => r.rawPath.startsWith(`/attachments/${attachment.id}/`)).length;
  }

  // ------------------------------------------------------------------ REST

  /** The next `count` requests matching method+path answer 429 with Retry-After, then work. */
  rateLimitNext(method: string, path: RegExp, retryAfterS = 0.05, count = 1): void {
    this.rateLimits.push({ method, path, retryAfterS, remaining: count });
  }

  /** Resolves with the first request (recorded at or after `since`) that matches; rejects after timeoutMs. */
  waitForRequest(match: (r: RecordedRequest) => boolean, options: { since?: number; timeoutMs?: number; what?: string } = {}): Promise<RecordedRequest> {
    const since = options.since ?? 0;
    const found = this.requests.find((r) => r.seq >= since && match(r));
    if (found) return Promise.resolve(found);
    const timeoutMs = options.timeoutMs ?? 15_000;
    return new Promise((resolve, reject) => {
      const onRequest = (r: RecordedRequest) => {
        if (r.seq >= since && match(r)) {
          cleanup();
          resolve(r);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        const recent = this.requests.slice(-8).map((r) => `${r.method} ${r.path} → ${r.status}`).join('\n  ');
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${options.what ?? 'a request'}; recent requests:\n  ${recent}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off('request', onRequest);
      };
      this.on('request', onRequest);
    });
  }

  /** Sequence number the next recorded request will get (for `since`). */
  get mark(): number {
    return this.requestSeq + 1;
  }

  private async listen(): Promise<void> {
    this.server = createServer((req, res) => void this.onHttp(req, res));
    this.wss = new WebSocketServer({ server: this.server, path: '/gateway' });
    this.wss.on('connection', (ws) => this.onSocket(ws));
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as AddressInfo).port;
  }

  private async onHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
    const raw = Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', this.baseUrl);
    const rawPath = url.pathname;
    const apiPath = rawPath.startsWith('/api/v10/') ? rawPath.slice('/api/v10'.length) : rawPath;
    const path = apiPath
      .split('/')
      .map((s) => {
        try {
          return decodeURIComponent(s);
        } catch {
          return s;
        }
      })
      .join('/');
    let body: any = null;
    const files: RecordedRequest['files'] = [];
    const type = String(req.headers['content-type'] ?? '');
    if (raw.length && type.includes('application/json')) body = JSON.parse(raw.toString('utf8'));
    else if (raw.length && type.startsWith('multipart/form-data')) {
      const form = await new Request('http://x/', { method: 'POST', headers: { 'content-type': type }, body: new Uint8Array(raw) }).formData();
      const pj = form.get('payload_json');
      body = typeof pj === 'string' ? JSON.parse(pj) : {};
      for (const [field, v] of form.entries()) {
        if (typeof v !== 'string') files.push({ field, name: v.name, bytes: Buffer.from(await v.arrayBuffer()) });
      }
    }
    const rec: RecordedRequest = { seq: ++this.requestSeq, method: req.method ?? 'GET', path, rawPath, query: url.searchParams, headers: req.headers, body, files, status: 0 };
    const reply = (status: number, json?: unknown, headers: Record<string, string> = {}) => {
      rec.status = status;
      this.requests.push(rec);
      if (json === undefined) {
        res.writeHead(status, headers);
        res.end();
      } else {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(json));
      }
      this.emit('request', rec);
    };

    if (rawPath.startsWith('/attachments/')) {
      const file = this.files.get(rawPath);
      if (!file) return reply(404, { message: 'Not Found' });
      rec.status = 200;
      this.requests.push(rec);
      res.writeHead(200, { 'content-type': file.contentType, 'content-length': String(file.bytes.length) });
      res.end(file.bytes);
      this.emit('request', rec);
      return;
    }
    if (!rawPath.startsWith('/api/v10/')) return reply(404, { message: '404: Not Found', code: 0 });

    const limit = this.rateLimits.find((l) => l.remaining > 0 && l.method === rec.method && l.path.test(path));
    if (limit) {
      limit.remaining--;
      return reply(
        429,
        { message: 'You are being rate limited.', retry_after: limit.retryAfterS, global: false },
        {
          'retry-after': String(limit.retryAfterS),
          'x-ratelimit-limit': '1',
          'x-ratelimit-remaining': '0',
          'x-ratelimit-reset-after': String(limit.retryAfterS),
          'x-ratelimit-bucket': 'fake-bucket',
          'x-ratelimit-scope': 'user',
        },
      );
    }
    const seg = path.split('/').filter(Boolean);
    const m = rec.method;
    const authorized = req.headers.authorization === `Bot ${this.token}`;
    const needsAuth = !(seg[0] === 'interactions' || seg[0] === 'webhooks');
    if (needsAuth && !authorized) return reply(401, { message: '401: Unauthorized', code: 0 });

    // GET /gateway/bot
    if (m === 'GET' && path === '/gateway/bot') {
      return reply(200, {
        url: this.gatewayUrl,
        shards: this.recommendedShards,
        session_start_limit: { ...this.sessionStartLimit },
      });
    }
    if (m === 'GET' && path === '/users/@me') return reply(200, this.botUser);
    if (m === 'GET' && path === '/applications/@me') return reply(200, this.applicationPayload());

    // Application commands.
    if (seg[0] === 'applications' && seg[1] === this.appId && seg.at(-1) === 'commands') {
      const scope = seg[2] === 'guilds' ? seg[3]! : 'global';
      if (m === 'GET') return reply(200, this.commands.get(scope) ?? []);
      if (m === 'PUT') {
        const registered = (body as any[]).map((c) => ({
          id: snowflake(),
          application_id: this.appId,
          version: snowflake(),
          type: 1,
          description: '',
          default_member_permissions: null,
          nsfw: false,
          integration_types: [0],
          ...(scope !== 'global' ? { guild_id: scope } : {}),
          ...c,
          // Discord echoes options with defaults filled in (required: false is dropped, like Discord).
          options: c.options ?? [],
        }));
        this.commands.set(scope, registered);
        return reply(200, registered);
      }
    }

    // Interaction callback: POST /interactions/{id}/{token}/callback
    if (m === 'POST' && seg[0] === 'interactions' && seg[3] === 'callback') {
      const token = seg[2]!;
      const channelId = this.interactionChannels.get(token) ?? this.channel('general').id;
      // 4/5: a new response message (for a button too); 6/7: the message the button is on.
      if (body?.type === 4 || body?.type === 5) this.keep(channelId, this.newOriginal(token), body.data ?? {}, files);
      if (body?.type === 7 && this.originalIds.has(token)) this.keep(channelId, this.originalIds.get(token)!, body.data ?? {}, files);
      this.emit('interactionCallback', { id: seg[1], token: seg[2], body });
      return reply(204);
    }

    // Webhooks: /webhooks/{app}/{token}[/messages/{id}]
    if (seg[0] === 'webhooks' && seg[1] === this.appId) {
      const token = seg[2]!;
      if (seg[3] === 'messages' && (m === 'PATCH' || m === 'GET')) {
        // @original of a component interaction is the message the button is on.
        const id = seg[4] === '@original' ? (this.originalIds.get(token) ?? this.newOriginal(token)) : seg[4]!;
        const channelId = this.interactionChannels.get(token) ?? this.channel('general').id;
        return reply(200, m === 'PATCH' ? this.keep(channelId, id, body, files) : (this.messages.get(id) ?? this.message({ channelId, author: this.botUser, id })));
      }
      if (seg[3] === 'messages' && m === 'DELETE') return reply(204);
      if (seg.length === 3 && m === 'POST') {
        return reply(200, this.keep(this.interactionChannels.get(token) ?? this.channel('general').id, snowflake(), body, files));
      }
    }

    // Channel messages and reactions.
    if (seg[0] === 'channels') {
      const channelId = seg[1]!;
      if (m === 'POST' && seg[2] === 'messages' && seg.length === 3) {
        return reply(200, this.keep(channelId, snowflake(), body, files));
      }
      if (m === 'PATCH' && seg[2] === 'messages' && seg.length === 4) {
        if (!this.messages.has(seg[3]!)) return reply(404, { message: 'Unknown Message', code: 10008 });
        return reply(200, this.keep(channelId, seg[3]!, body, files));
      }
      if (m === 'PUT' && seg[2] === 'messages' && seg[4] === 'reactions' && seg[6] === '@me') return reply(204);
    }
    return reply(404, { message: `fake Discord has no route for ${m} ${path}`, code: 0 });
  }

  private readonly interactionChannels = new Map<string, string>();
  /** Interaction token → the id of its original response (stable across edits). */
  private readonly originalIds = new Map<string, string>();
  /** Messages the bot posted or edited, by id, as they are now. */
  readonly messages = new Map<string, any>();

  private newOriginal(token: string): string {
    const id = snowflake();
    this.originalIds.set(token, id);
    return id;
  }

  /** Creates or updates a bot message from a REST body (fields not sent are kept, like Discord). */
  private keep(channelId: string, id: string, body: any, files: RecordedRequest['files']): any {
    const prev = this.messages.get(id) ?? this.message({ channelId, author: this.botUser, id });
    const next = { ...prev, edited_timestamp: this.messages.has(id) ? new Date().toISOString() : null };
    if (body?.content !== undefined) next.content = body.content;
    if (body?.embeds !== undefined) next.embeds = body.embeds;
    if (body?.components !== undefined) next.components = body.components;
    if (body?.flags !== undefined) next.flags = body.flags;
    if (files.length || body?.attachments !== undefined) {
      const kept = (body?.attachments ?? []).filter((a: any) => prev.attachments.some((p: any) => p.id === a.id)).map((a: any) => prev.attachments.find((p: any) => p.id === a.id));
      next.attachments = [...kept, ...files.map((f) => ({ id: snowflake(), filename: f.name, size: f.bytes.length, url: `${this.baseUrl}/attachments/x/${f.name}`, proxy_url: `${this.baseUrl}/attachments/x/${f.name}` }))];
    }
    this.messages.set(id, next);
    return next;
  }

  /** A message object as Discord returns it. */
  message(o: { channelId: string; author: FakeUser; body?: any; id?: string; attachments?: any[]; content?: string; guildId?: string }): any {
    return {
      id: o.id ?? snowflake(),
      type: o.body?.message_reference ? 19 : 0,
      channel_id: o.channelId,
      ...(o.guildId ? { guild_id: o.guildId } : {}),
      author: o.author,
      content: o.content ?? o.body?.content ?? '',
      timestamp: new Date().toISOString(),
      edited_timestamp: null,
      tts: false,
      mention_everyone: false,
      mentions: [],
      mention_roles: [],
      attachments: o.attachments ?? [],
      embeds: o.body?.embeds ?? [],
      pinned: false,
      flags: o.body?.flags ?? 0,
      components: [],
      ...(o.body?.message_reference ? { message_reference: o.body.message_reference } : {}),
    };
  }

  // ------------------------------------------------------------------ gateway

  private send(ws: WebSocket, payload: unknown): void {
    ws.send(JSON.stringify(payload));
  }

  /** The gateway session of a shard (one per shard: discord.js's ShardingManager runs several). */
  private session(shard: number): ShardSession {
    let sess = this.sessions.get(shard);
    if (!sess) {
      sess = { socket: null, sessionId: null, seq: 0, events: [], delivered: 0, ready: false };
      this.sessions.set(shard, sess);
    }
    return sess;
  }

  /** The shard a guild's events go to: (guild_id >> 22) % shard count, as Discord routes them. */
  shardOf(guildId: string): number {
    return Number((BigInt(guildId) >> 22n) % BigInt(this.shardCount));
  }

  private onSocket(ws: WebSocket): void {
    // One shard: a new connection replaces the old one at once (as before sharding existed here).
    if (this.shardCount === 1) {
      const s0 = this.session(0);
      if (s0.socket) s0.socket.terminate();
      s0.socket = ws;
      s0.ready = false;
    }
    this.emit('connection');
    this.send(ws, { op: 10, d: { heartbeat_interval: this.heartbeatIntervalMs } });
    ws.on('message', (data) => {
      const p = JSON.parse(String(data));
      switch (p.op) {
        case 1:
          this.heartbeats++;
          this.send(ws, { op: 11 });
          this.emit('heartbeat', p.d);
          break;
        case 2:
          this.identifies.push(p.d);
          this.onIdentify(ws, p.d);
          break;
        case 6:
          this.resumes.push(p.d);
          this.onResume(ws, p.d);
          break;
        default:
          break;
      }
    });
    ws.on('close', () => {
      for (const sess of this.sessions.values()) {
        if (sess.socket === ws) {
          sess.socket = null;
          sess.ready = false;
          this.emit('disconnect');
        }
      }
    });
  }

  /** Makes `ws` the socket of `shard`'s session (a previous one is closed). */
  private attach(shard: number, ws: WebSocket): ShardSession {
    const sess = this.session(shard);
    for (const other of this.sessions.values()) if (other !== sess && other.socket === ws) other.socket = null;
    if (sess.socket && sess.socket !== ws) sess.socket.terminate();
    sess.socket = ws;
    return sess;
  }

  private onIdentify(ws: WebSocket, d: any): void {
    if (d.token !== this.token) {
      ws.close(4004, 'Authentication failed.');
      return;
    }
    if ((d.intents & this.disallowedIntents) !== 0) {
      ws.close(4014, 'Disallowed intent(s).');
      return;
    }
    const [shard, count] = Array.isArray(d.shard) ? (d.shard as [number, number]) : [0, 1];
    this.shardCount = count;
    const sess = this.attach(shard, ws);
    sess.sessionId = `session-${snowflake()}`;
    sess.events.length = 0;
    sess.seq = 0;
    sess.delivered = 0;
    sess.ready = true;
    const mine = this.guilds.filter((g) => this.shardOf(g.id) === shard);
    this.dispatch(
      'READY',
      {
        v: 10,
        user: { ...this.botUser, verified: true, flags: 0, mfa_enabled: false },
        guilds: mine.map((g) => ({ id: g.id, unavailable: true })),
        session_id: sess.sessionId,
        resume_gateway_url: this.gatewayUrl,
        shard: [shard, count],
        application: { id: this.appId, flags: 0 },
        private_channels: [],
        relationships: [],
        presences: [],
        guild_join_requests: [],
        user_settings: {},
        geo_ordered_rtc_regions: [],
      },
      shard,
    );
    for (const g of mine) this.dispatch('GUILD_CREATE', this.guildPayload(g), shard);
    this.emit('identify', d);
  }

  private onResume(ws: WebSocket, d: any): void {
    const entry = [...this.sessions.entries()].find(([, sess]) => sess.sessionId === d.session_id);
    if (d.token !== this.token || !entry) {
      this.send(ws, { op: 9, d: false });
      return;
    }
    const sess = this.attach(entry[0], ws);
    sess.ready = true;
    sess.delivered = d.seq;
    for (const e of sess.events) if (e.s > d.seq) this.deliver(sess, e);
    const resumed = { s: ++sess.seq, t: 'RESUMED', d: { _trace: ['fake'] } };
    sess.events.push(resumed);
    this.deliver(sess, resumed);
    this.emit('resume', d);
  }

  private deliver(sess: ShardSession, e: GatewayEvent): void {
    if (!sess.socket || !sess.ready || e.s <= sess.delivered) return;
    this.send(sess.socket, { op: 0, s: e.s, t: e.t, d: e.d });
    sess.delivered = e.s;
  }

  /**
   * Sends an event now, or keeps it for replay when the client resumes. Returns its sequence
   * number. It goes to the shard of its guild_id (shard 0 without one), unless `shard` is given.
   */
  dispatch(t: string, d: unknown, shard?: number): number {
    const guildId = (d as { guild_id?: unknown } | null)?.guild_id;
    const sess = this.session(shard ?? (typeof guildId === 'string' ? this.shardOf(guildId) : 0));
    const e = { s: ++sess.seq, t, d };
    sess.events.push(e);
    this.deliver(sess, e);
    return e.s;
  }

  /** Drops a shard's gateway connection as a network fault would (close code 4000: the client resumes). */
  async dropConnection(code = 4000, shard = 0): Promise<void> {
    const sess = this.session(shard);
    const ws = sess.socket;
    if (!ws) return;
    sess.ready = false;
    const closed = once(ws, 'close');
    ws.close(code, 'fake network fault');
    await closed;
  }

  /** Resolves on the next gateway event of this name (identify, resume, heartbeat, connection, disconnect). */
  next(event: 'identify' | 'resume' | 'heartbeat' | 'connection' | 'disconnect' | 'interactionCallback', timeoutMs = 15_000): Promise<any> {
    return once(this, event, { signal: AbortSignal.timeout(timeoutMs) }).then((args) => args[0]);
  }

  /** GET /applications/@me, with the fields Discord's schema (PrivateApplicationResponse) requires. */
  private applicationPayload(): unknown {
    const team = this.team && {
      id: this.team.id,
      icon: null,
      name: this.team.name,
      owner_user_id: this.team.ownerUserId,
      members: this.team.members.map((m) => ({ user: m.user, team_id: this.team!.id, membership_state: m.state, role: m.role, permissions: ['*'] })),
    };
    return {
      id: this.appId,
      name: 'catdog',
      icon: null,
      description: '',
      type: null,
      bot: this.botUser,
      bot_public: true,
      bot_require_code_grant: false,
      verify_key: 'f'.repeat(64),
      flags: 0,
      flags_new: '0',
      redirect_uris: [],
      interactions_endpoint_url: null,
      role_connections_verification_url: null,
      // A team-owned application's owner is a pseudo-user named after the team.
      owner: team ? { id: team.id, username: `team${team.id}`, discriminator: '0000', avatar: null, flags: 1024 } : this.owner,
      approximate_guild_count: this.guilds.length,
      approximate_user_install_count: 0,
      approximate_user_authorization_count: 0,
      explicit_content_filter: 0,
      team,
      eligible_oauth2_scopes: [],
    };
  }

  private guildPayload(g: FakeGuild): unknown {
    return {
      id: g.id,
      name: g.name,
      icon: null,
      splash: null,
      discovery_splash: null,
      owner_id: '1',
      afk_channel_id: null,
      afk_timeout: 300,
      verification_level: 0,
      default_message_notifications: 0,
      explicit_content_filter: 0,
      roles: [
        { id: g.id, name: '@everyone', color: 0, hoist: false, icon: null, unicode_emoji: null, position: 0, permissions: g.everyonePermissions.toString(), managed: false, mentionable: false, flags: 0 },
        ...(g.roles ?? []).map((r, i) => ({ id: r.id, name: r.name, color: 0, hoist: false, icon: null, unicode_emoji: null, position: i + 1, permissions: '0', managed: false, mentionable: false, flags: 0 })),
      ],
      emojis: [],
      stickers: [],
      features: [],
      mfa_level: 0,
      application_id: null,
      system_channel_id: null,
      system_channel_flags: 0,
      rules_channel_id: null,
      vanity_url_code: null,
      description: null,
      banner: null,
      premium_tier: 0,
      preferred_locale: 'en-US',
      public_updates_channel_id: null,
      nsfw_level: 0,
      premium_progress_bar_enabled: false,
      joined_at: new Date().toISOString(),
      large: false,
      unavailable: false,
      member_count: 3,
      voice_states: [],
      members: [{ user: this.botUser, roles: [], joined_at: new Date().toISOString(), deaf: false, mute: false, flags: 0 }],
      channels: g.channels.map((c, i) => ({ id: c.id, type: c.type, name: c.name, position: i, permission_overwrites: [], parent_id: null, nsfw: false, topic: null, last_message_id: null, rate_limit_per_user: 0 })),
      threads: [],
      presences: [],
      stage_instances: [],
      guild_scheduled_events: [],
      soundboard_sounds: [],
    };
  }

  // ------------------------------------------------------------------ what users do

  private member(user: FakeUser, permissions: bigint, roles: string[] = []): any {
    return { user, roles, permissions: permissions.toString(), joined_at: new Date().toISOString(), deaf: false, mute: false, flags: 0, nick: null, avatar: null, pending: false };
  }

  private interactionBase(o: { user: FakeUser; guild?: FakeGuild; channel: FakeChannel; permissions?: bigint; roles?: string[] }): { id: string; token: string; payload: any } {
    const guild = o.guild ?? this.guild();
    const id = snowflake();
    const token = `itoken-${id}`;
    this.interactionChannels.set(token, o.channel.id);
    return {
      id,
      token,
      payload: {
        id,
        application_id: this.appId,
        token,
        version: 1,
        guild_id: guild.id,
        channel_id: o.channel.id,
        channel: { id: o.channel.id, type: o.channel.type, name: o.channel.name, guild_id: guild.id, permissions: DEFAULT_PERMISSIONS.toString() },
        member: this.member(o.user, o.permissions ?? DEFAULT_PERMISSIONS, o.roles),
        app_permissions: guild.everyonePermissions.toString(),
        locale: 'en-US',
        guild_locale: 'en-US',
        entitlements: [],
        authorizing_integration_owners: { '0': guild.id },
        context: 0,
        attachment_size_limit: 10 * 1024 * 1024,
      },
    };
  }

  /**
   * A user runs a slash command. `options` as Discord sends them ({name, type, value} or a
   * subcommand {name, type: 1, options}); attachments go to data.resolved.
   */
  slashCommand(
    name: string,
    o: { user: FakeUser; channel?: FakeChannel; options?: any[]; attachments?: any[]; permissions?: bigint; roles?: string[]; guild?: FakeGuild },
  ): { id: string; token: string } {
    const base = this.interactionBase({ user: o.user, channel: o.channel ?? this.channel('general'), permissions: o.permissions, roles: o.roles, guild: o.guild });
    const registered = [...this.commands.values()].flat().find((c) => c.name === name && (c.type ?? 1) === 1);
    base.payload.type = 2;
    base.payload.data = {
      id: registered?.id ?? snowflake(),
      name,
      type: 1,
      guild_id: base.payload.guild_id,
      options: o.options ?? [],
      ...(o.attachments?.length ? { resolved: { attachments: Object.fromEntries(o.attachments.map((a) => [a.id, a])) } } : {}),
    };
    this.dispatch('INTERACTION_CREATE', base.payload);
    return { id: base.id, token: base.token };
  }

  /**
   * A user presses a button (custom id `customId`) on a message the bot posted (its id, as kept
   * from the bot's requests). An update or deferred update of this interaction edits that message.
   */
  pressButton(
    messageId: string,
    customId: string,
    o: { user: FakeUser; permissions?: bigint; roles?: string[]; guild?: FakeGuild; /** a crafted id the message does not carry (a modified client) */ crafted?: boolean },
  ): { id: string; token: string } {
    const message = this.messages.get(messageId);
    if (!message) throw new Error(`the bot has posted no message ${messageId}`);
    const buttons = (message.components ?? []).flatMap((row: any) => row.components ?? []);
    if (!o.crafted && !buttons.some((b: any) => b.custom_id === customId)) {
      throw new Error(`message ${messageId} has no button ${customId} (it has: ${buttons.map((b: any) => b.custom_id).join(', ') || 'none'})`);
    }
    const channel = (o.guild ?? this.guild()).channels.find((c) => c.id === message.channel_id) ?? this.channel('general');
    const base = this.interactionBase({ user: o.user, channel, permissions: o.permissions, roles: o.roles, guild: o.guild });
    this.originalIds.set(base.token, messageId);
    base.payload.type = 3;
    base.payload.message = message;
    base.payload.data = { custom_id: customId, component_type: 2 };
    this.dispatch('INTERACTION_CREATE', base.payload);
    return { id: base.id, token: base.token };
  }

  /** The id of the original response of an interaction (after its first edit). */
  originalId(interaction: { token: string }): string | undefined {
    return this.originalIds.get(interaction.token);
  }

  /** A user picks "Cat or dog?" (or another message command) on a message. */
  messageCommand(name: string, o: { user: FakeUser; target: any; channel?: FakeChannel; guild?: FakeGuild }): { id: string; token: string } {
    const base = this.interactionBase({ user: o.user, channel: o.channel ?? this.channel('general'), guild: o.guild });
    const registered = [...this.commands.values()].flat().find((c) => c.name === name && c.type === 3);
    base.payload.type = 2;
    base.payload.data = {
      id: registered?.id ?? snowflake(),
      name,
      type: 3,
      guild_id: base.payload.guild_id,
      target_id: o.target.id,
      resolved: { messages: { [o.target.id]: o.target } },
    };
    this.dispatch('INTERACTION_CREATE', base.payload);
    return { id: base.id, token: base.token };
  }

  /** A user posts a message (MESSAGE_CREATE); returns the message object. */
  postMessage(o: { user: FakeUser; channel: FakeChannel; attachments?: any[]; content?: string; guild?: FakeGuild }): any {
    const guild = o.guild ?? this.guild();
    const msg = this.message({ channelId: o.channel.id, author: o.user, attachments: o.attachments, content: o.content, guildId: guild.id });
    this.dispatch('MESSAGE_CREATE', { ...msg, member: { roles: [], joined_at: new Date().toISOString(), deaf: false, mute: false, flags: 0 } });
    return msg;
  }

  /** A message object (not dispatched), e.g. the target of a message command. */
  existingMessage(o: { user: FakeUser; channel: FakeChannel; attachments?: any[]; content?: string }): any {
    return this.message({ channelId: o.channel.id, author: o.user, attachments: o.attachments, content: o.content });
  }

  // ------------------------------------------------------------------ answers, for assertions

  /** The interaction callback (defer or reply) for an interaction. */
  callback(interaction: { id: string }, since = 0): Promise<RecordedRequest> {
    return this.waitForRequest((r) => r.method === 'POST' && r.path === `/interactions/${interaction.id}/${`itoken-${interaction.id}`}/callback` && r.status === 204, {
      since,
      what: `the callback of interaction ${interaction.id}`,
    });
  }

  /** The edit of the original response (after a defer). */
  originalEdit(interaction: { token: string }, since = 0): Promise<RecordedRequest> {
    return this.waitForRequest((r) => r.method === 'PATCH' && r.path === `/webhooks/${this.appId}/${interaction.token}/messages/@original` && r.status === 200, {
      since,
      what: `the edit of interaction ${interaction.token}'s answer`,
    });
  }

  async close(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
