/**
 * The Discord bot end to end: src/main.ts starts the real discord.js Client against the fake
 * Discord on 127.0.0.1 (REST + CDN + gateway), with the mean-colour test classifier behind the
 * real queue, store (SQLite in a temp folder), downloads and web server.
 */
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Events, GatewayIntentBits, MessageFlags, PermissionFlagsBits } from 'discord.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { syncCommands } from '../../src/bot/register.ts';
import { main, type App } from '../../src/main.ts';
import { DEFAULT_PERMISSIONS, FakeDiscord, makeUser, snowflake, type FakeGuild, fakeDiscordEnv } from '../helpers/fake-discord.ts';
import { CATTY, DOGGY, GRASSY, MeanColourTestClassifier, expectedDog, makePhoto } from '../helpers/test-classifier.ts';

const MAX_BYTES = 200 * 1024;
const EPHEMERAL = MessageFlags.Ephemeral;

let fake: FakeDiscord;
let app: App;
let classifier: MeanColourTestClassifier;
let dataDir: string;
const logs: string[] = [];
const statsGuild: FakeGuild = {
  id: snowflake(),
  name: 'Stats Club',
  channels: [{ id: snowflake(), name: 'photos', type: 0 }],
  everyonePermissions: DEFAULT_PERMISSIONS,
};

function pct(rgb: readonly [number, number, number]): string {
  return `${Math.round(expectedDog(rgb) * 100)}%`;
}

/** Waits until the bot has received `event` from the gateway and every handler it started has answered. */
async function handled(event: Events.MessageCreate | Events.InteractionCreate, dispatch: () => unknown): Promise<void> {
  const received = once(app.bot!.client, event, { signal: AbortSignal.timeout(15_000) });
  dispatch();
  await received;
  await app.bot!.settled();
}

beforeAll(async () => {
  fake = await FakeDiscord.start({ heartbeatIntervalMs: 250 });
  fake.guilds.push(statsGuild);
  dataDir = mkdtempSync(join(tmpdir(), 'catdog-bot-'));
  classifier = new MeanColourTestClassifier({ maxBytes: MAX_BYTES });
  app = await main({
    env: {
      ...fakeDiscordEnv(fake, dataDir),
      MAX_IMAGE_BYTES: String(MAX_BYTES),
      RATE_BURST: '1',
      RATE_REFILL_SECONDS: '3600',
      QUEUE_SIZE: '0',
      CLASSIFY_CONCURRENCY: '2',
      GUILD_CONCURRENCY: '2',
    },
    classifier,
    handleSignals: false,
    log: (line) => logs.push(line),
  });
});

afterAll(async () => {
  await app?.shutdown('test over');
  await fake?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('startup', () => {
  it('connects through GET /gateway/bot with the token, asks for exactly the intents it needs, and heartbeats', async () => {
    const gatewayBot = fake.requests.find((r) => r.path === '/gateway/bot');
    expect(gatewayBot?.headers.authorization).toBe(`Bot ${fake.token}`);
    expect(fake.identifies).toHaveLength(1);
    const identify = fake.identifies[0];
    expect(identify.token).toBe(fake.token);
    expect(identify.intents).toBe(GatewayIntentBits.Guilds | GatewayIntentBits.GuildMessages | GatewayIntentBits.MessageContent);
    expect(identify.compress).toBe(false); // no zlib-sync, no identify compression
    expect(identify.shard).toEqual([0, 1]);
    expect(app.bot!.client.guilds.cache.map((g) => g.name).sort()).toEqual(['Pet Lovers', 'Stats Club']);
    // Two heartbeats on one connection: the first was ACKed (else discord.js drops a zombie connection).
    const before = fake.heartbeats;
    while (fake.heartbeats < before + 2) await fake.next('heartbeat');
    expect(fake.identifies).toHaveLength(1);
    expect(fake.resumes).toHaveLength(0);
    expect(app.bot!.connected).toBe(true);
    expect(logs.some((l) => /model: backbones ResNet50 \+ Xception; head mean-colour-test-double/.test(l))).toBe(true);
  });

  it('registered the commands in the development guild, and a second sync changes nothing', async () => {
    const registered = fake.commands.get(fake.guild().id)!;
    expect(registered.map((c) => `${c.type}:${c.name}`).sort()).toEqual([
      '1:catdog',
      '1:catdog-settings',
      '1:catdog-stats',
      '1:jobs',
      '1:model',
      '1:retrain',
      '1:score',
      '3:Cat or dog?',
    ]);
    const settings = registered.find((c) => c.name === 'catdog-settings');
    expect(settings.default_member_permissions).toBe(PermissionFlagsBits.ManageGuild.toString());
    const puts = fake.requests.filter((r) => r.method === 'PUT').length;
    const again = await syncCommands(app.bot!.client.rest, fake.appId, fake.guild().id, app.bot!.commandDefinitions);
    expect(again.changed).toBe(false);
    expect(fake.requests.filter((r) => r.method === 'PUT').length).toBe(puts);
  });
});

describe('/catdog', () => {
  it('defers at once, then edits in an embed with the verdict, dog % and bar, backbones and time', async () => {
    const att = fake.attachment('rex.png', await makePhoto(DOGGY), { contentType: 'image/png', width: 64, height: 48 });
    const i = fake.slashCommand('catdog', { user: makeUser('alice'), options: [{ name: 'image', type: 11, value: att.id }], attachments: [att] });
    const defer = await fake.callback(i);
    expect(defer.body.type).toBe(5); // DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE
    expect((defer.body.data?.flags ?? 0) & EPHEMERAL).toBe(0);
    const edit = await fake.originalEdit(i);
    expect(edit.seq).toBeGreaterThan(defer.seq);
    const [embed] = edit.body.embeds;
    expect(embed.title).toBe('🐶 Dog · rex.png');
    expect(embed.description).toContain(`Dog probability: **${pct(DOGGY)}**`);
    const cells = Math.round(expectedDog(DOGGY) * 10);
    expect(embed.description).toContain(`\`${'█'.repeat(cells)}${'░'.repeat(10 - cells)}\``);
    expect(embed.fields).toEqual([
      { name: 'Backbones', value: 'ResNet50 + Xception (fp32)', inline: true },
      { name: 'Time', value: expect.stringMatching(/^\d+\.\d+ s$/), inline: true },
    ]);
    expect(embed.footer.text).toBe('model: mean-colour-test-double');
    expect(fake.downloads(att)).toBe(1);
  });

  it('answers a cat, and "neither" for a photo of no cat or dog; private:true defers ephemerally', async () => {
    const cat = fake.attachment('tom.jpg', await makePhoto(CATTY, { format: 'jpeg' }), { contentType: 'image/jpeg', width: 64, height: 48 });
    const i1 = fake.slashCommand('catdog', { user: makeUser('bea'), options: [{ name: 'image', type: 11, value: cat.id }, { name: 'private', type: 5, value: true }], attachments: [cat] });
    const defer = await fake.callback(i1);
    expect(defer.body.data.flags & EPHEMERAL).toBe(EPHEMERAL);
    const e1 = (await fake.originalEdit(i1)).body.embeds[0];
    expect(e1.title).toBe('🐱 Cat · tom.jpg');
    expect(e1.description).toContain(`**${pct(CATTY)}**`);

    const grass = fake.attachment('lawn.webp', await makePhoto(GRASSY, { format: 'webp' }), { contentType: 'image/webp', width: 64, height: 48 });
    const i2 = fake.slashCommand('catdog', { user: makeUser('cai'), options: [{ name: 'image', type: 11, value: grass.id }], attachments: [grass] });
    const e2 = (await fake.originalEdit(i2)).body.embeds[0];
    expect(e2.title).toBe('🤷 Neither a cat nor a dog · lawn.webp');
    expect(e2.description).toContain('it looks more like: rapeseed');
  });

  it('takes url: links on an allowed host', async () => {
    const att = fake.attachment('linked.png', await makePhoto(DOGGY), { contentType: 'image/png' });
    const i = fake.slashCommand('catdog', { user: makeUser('dan'), options: [{ name: 'url', type: 3, value: att.url }] });
    const e = (await fake.originalEdit(i)).body.embeds[0];
    expect(e.title).toBe('🐶 Dog · linked.png');
  });

  it('answers politely for a non-image, an oversized file, a host outside the allowlist and a missing option', async () => {
    const text = fake.attachment('notes.png', Buffer.from('these are my shopping notes, not a photo\n'), { contentType: 'image/png' });
    const i1 = fake.slashCommand('catdog', { user: makeUser('eve'), options: [{ name: 'image', type: 11, value: text.id }], attachments: [text] });
    const r1 = (await fake.originalEdit(i1)).body;
    expect(r1.content).toMatch(/^🙀 I can't read that as a photo\. This looks like text, not an image\./);
    expect(r1.embeds).toEqual([]);

    // Discord says it is too big: refused before any download.
    const big = fake.attachment('huge.png', await makePhoto(DOGGY), { contentType: 'image/png', size: 5 * 1024 * 1024 });
    const i2 = fake.slashCommand('catdog', { user: makeUser('fay'), options: [{ name: 'image', type: 11, value: big.id }], attachments: [big] });
    expect((await fake.originalEdit(i2)).body.content).toBe('📏 That photo is too big for me. The file is 5.0 MB, over the 200.0 KB limit.');
    expect(fake.downloads(big)).toBe(0);

    // A link whose size nobody announced: refused from the download's Content-Length.
    const noise = Buffer.alloc(300 * 1024, 7);
    const linked = fake.attachment('big.png', noise, { contentType: 'image/png' });
    const i3 = fake.slashCommand('catdog', { user: makeUser('gus'), options: [{ name: 'url', type: 3, value: linked.url }] });
    expect((await fake.originalEdit(i3)).body.content).toBe('📏 That photo is too big for me. The file is 300.0 KB, over the 200.0 KB limit.');

    const elsewhere = fake.attachment('elsewhere.png', await makePhoto(DOGGY), { contentType: 'image/png', host: 'localhost' });
    const i4 = fake.slashCommand('catdog', { user: makeUser('hal'), options: [{ name: 'url', type: 3, value: elsewhere.url }] });
    expect((await fake.originalEdit(i4)).body.content).toBe(
      '🔒 I only fetch images from 127.0.0.1; "localhost" is not one of them. Upload the photo to Discord instead.',
    );
    expect(fake.downloads(elsewhere)).toBe(0);

    const i5 = fake.slashCommand('catdog', { user: makeUser('ida'), options: [] });
    expect((await fake.originalEdit(i5)).body.content).toBe('Attach a photo with `image:` or give a link with `url:`.');

    const gone = { ...fake.attachment('expired.png', Buffer.from('x'), { contentType: 'image/png' }) };
    gone.url = gone.url.replace('/attachments/', '/attachments/0');
    const i6 = fake.slashCommand('catdog', { user: makeUser('jon'), options: [{ name: 'image', type: 11, value: gone.id }], attachments: [gone] });
    expect((await fake.originalEdit(i6)).body.content).toBe('📡 The image link has expired or the file is gone (HTTP 404). Upload the photo again.');
  });

  it('tells a user past their limit when to try again, every time, only to them', async () => {
    const user = makeUser('kim');
    const photo = await makePhoto(DOGGY);
    const ask = () => {
      const att = fake.attachment('again.png', photo, { contentType: 'image/png' });
      return fake.slashCommand('catdog', { user, options: [{ name: 'image', type: 11, value: att.id }], attachments: [att] });
    };
    const first = ask();
    expect((await fake.originalEdit(first)).body.embeds[0].title).toBe('🐶 Dog · again.png');
    const calls = classifier.calls;

    const second = ask();
    const told = await fake.callback(second);
    expect(told.body.type).toBe(4); // CHANNEL_MESSAGE_WITH_SOURCE
    expect(told.body.data.flags & EPHEMERAL).toBe(EPHEMERAL);
    expect(told.body.data.content).toMatch(/^⏳ Easy there! You can ask me again in (3600|3599) s\.$/);

    // Never dropped silently: the next try is told again (no deferral deleted without a word).
    const third = ask();
    const again = await fake.callback(third);
    expect(again.body.type).toBe(4);
    expect(again.body.data.flags & EPHEMERAL).toBe(EPHEMERAL);
    expect(again.body.data.content).toMatch(/^⏳ Easy there! You can ask me again in (3600|3599) s\.$/);
    expect(classifier.calls).toBe(calls);
    expect(fake.requests.filter((r) => r.method === 'DELETE' && r.path === `/webhooks/${fake.appId}/${third.token}/messages/@original`)).toEqual([]);
  });

  it('says "busy" when every slot is taken instead of hanging', async () => {
    const photo = await makePhoto(CATTY);
    const holdA = classifier.hold();
    const holdB = classifier.hold();
    const send = (name: string) => {
      const att = fake.attachment(`${name}.png`, photo, { contentType: 'image/png' });
      return fake.slashCommand('catdog', { user: makeUser(name), options: [{ name: 'image', type: 11, value: att.id }], attachments: [att] });
    };
    const a = send('lea');
    const b = send('max');
    await Promise.all([holdA.reached, holdB.reached]);
    const c = send('ned');
    expect((await fake.originalEdit(c)).body.content).toBe("⏳ I'm busy with other photos right now. Please try again in a moment.");
    holdA.release();
    holdB.release();
    expect((await fake.originalEdit(a)).body.embeds[0].title).toBe('🐱 Cat · lea.png');
    expect((await fake.originalEdit(b)).body.embeds[0].title).toBe('🐱 Cat · max.png');
  });

  it('still answers when Discord rate-limits the edit (429): discord.js waits and retries', async () => {
    const rateLimited = new Promise((resolve) => app.bot!.client.rest.once('rateLimited', resolve));
    fake.rateLimitNext('PATCH', /^\/webhooks\/.*\/messages\/@original$/, 0.05);
    const att = fake.attachment('patient.png', await makePhoto(DOGGY), { contentType: 'image/png' });
    const mark = fake.mark;
    const i = fake.slashCommand('catdog', { user: makeUser('olive'), options: [{ name: 'image', type: 11, value: att.id }], attachments: [att] });
    const edit = await fake.originalEdit(i, mark);
    const refused = fake.requests.filter((r) => r.seq >= mark && r.status === 429 && r.path === edit.path);
    expect(refused).toHaveLength(1);
    expect(refused[0]!.seq).toBeLessThan(edit.seq);
    expect(edit.body.embeds[0].title).toBe('🐶 Dog · patient.png');
    expect(await rateLimited).toMatchObject({ method: 'PATCH', retryAfter: expect.any(Number) });
  });

  it('survives a gateway drop mid-request: RESUMEs, the answer in flight goes out, and a missed interaction is replayed', async () => {
    const hold = classifier.hold();
    const att = fake.attachment('midway.png', await makePhoto(DOGGY), { contentType: 'image/png' });
    const first = fake.slashCommand('catdog', { user: makeUser('pat'), options: [{ name: 'image', type: 11, value: att.id }], attachments: [att] });
    await hold.reached;
    const resumed = new Promise((resolve) => app.bot!.client.once(Events.ShardResume, resolve));
    const resumeSent = fake.next('resume');
    await fake.dropConnection(4000);
    // Sent while the bot is disconnected: it only arrives through the replay after RESUME.
    const att2 = fake.attachment('missed.png', await makePhoto(CATTY), { contentType: 'image/png' });
    const missed = fake.slashCommand('catdog', { user: makeUser('quinn'), options: [{ name: 'image', type: 11, value: att2.id }], attachments: [att2] });
    const resume = await resumeSent;
    expect(resume.token).toBe(fake.token);
    expect(resume.session_id).toMatch(/^session-/);
    await resumed;
    hold.release();
    expect((await fake.originalEdit(first)).body.embeds[0].title).toBe('🐶 Dog · midway.png');
    expect((await fake.originalEdit(missed)).body.embeds[0].title).toBe('🐱 Cat · missed.png');
    expect(fake.identifies).toHaveLength(1); // resumed, not a new session
    expect(app.bot!.connected).toBe(true);
  });
});

describe('"Cat or dog?" on a message', () => {
  it('classifies every image on the message, one embed each', async () => {
    const dog = fake.attachment('dog.png', await makePhoto(DOGGY), { contentType: 'image/png', width: 64, height: 48 });
    const cat = fake.attachment('cat.jpg', await makePhoto(CATTY, { format: 'jpeg' }), { contentType: 'image/jpeg', width: 64, height: 48 });
    const notes = fake.attachment('notes.txt', Buffer.from('hello'), { contentType: 'text/plain' });
    const target = fake.existingMessage({ user: makeUser('poster'), channel: fake.channel('general'), attachments: [dog, notes, cat], content: 'my pets!' });
    const i = fake.messageCommand('Cat or dog?', { user: makeUser('rita'), target });
    expect((await fake.callback(i)).body.type).toBe(5);
    const edit = (await fake.originalEdit(i)).body;
    expect(edit.embeds.map((e: any) => e.title)).toEqual(['🐶 Dog · dog.png', '🐱 Cat · cat.jpg']);
    expect(edit.embeds[0].description).toContain(`**${pct(DOGGY)}**`);
    expect(edit.embeds[1].description).toContain(`**${pct(CATTY)}**`);
    expect(fake.downloads(notes)).toBe(0); // not an image attachment
  });

  it('says so when the message has no images', async () => {
    const target = fake.existingMessage({ user: makeUser('talker'), channel: fake.channel('general'), content: 'just words' });
    const i = fake.messageCommand('Cat or dog?', { user: makeUser('sam'), target });
    expect((await fake.originalEdit(i)).body.content).toBe('That message has no images for me to look at.');
  });
});

describe('auto-detect and /catdog-settings', () => {
  const settings = (sub: string, options: any[], o: { user?: ReturnType<typeof makeUser>; channel?: string; permissions?: bigint } = {}) =>
    fake.slashCommand('catdog-settings', {
      user: o.user ?? makeUser('manager'),
      channel: fake.channel(o.channel ?? 'pets'),
      permissions: o.permissions ?? DEFAULT_PERMISSIONS | PermissionFlagsBits.ManageGuild,
      options: [{ name: sub, type: 1, options }],
    });

  it('is off by default: a photo posted gets no answer and is not downloaded', async () => {
    const att = fake.attachment('quiet.png', await makePhoto(DOGGY), { contentType: 'image/png', width: 64, height: 48 });
    const mark = fake.mark;
    await handled(Events.MessageCreate, () => fake.postMessage({ user: makeUser('tess'), channel: fake.channel('pets'), attachments: [att] }));
    expect(fake.downloads(att)).toBe(0);
    expect(fake.requests.filter((r) => r.seq >= mark && r.path.startsWith('/channels/'))).toEqual([]);
  });

  it('refuses members without Manage Server', async () => {
    const i = settings('auto-detect', [{ name: 'enabled', type: 5, value: true }], { permissions: DEFAULT_PERMISSIONS });
    const reply = await fake.callback(i);
    expect(reply.body.type).toBe(4);
    expect(reply.body.data.flags & EPHEMERAL).toBe(EPHEMERAL);
    expect(reply.body.data.content).toBe('Only members with the **Manage Server** permission can change these settings.');
  });

  it('when switched on in a channel: replies there with the verdicts (up to 10 images), and nowhere else', async () => {
    const pets = fake.channel('pets');
    const on = settings('auto-detect', [{ name: 'enabled', type: 5, value: true }]);
    expect((await fake.callback(on)).body.data.flags & EPHEMERAL).toBe(EPHEMERAL);
    const words = (await fake.originalEdit(on)).body.content;
    expect(words).toContain(`Auto-detect is now **on** in <#${pets.id}>.`);
    expect(words).toContain('this channel: **on**');

    const dog = fake.attachment('pup.png', await makePhoto(DOGGY), { contentType: 'image/png', width: 64, height: 48 });
    const cat = fake.attachment('kit.png', await makePhoto(CATTY), { contentType: 'image/png', width: 64, height: 48 });
    const mark = fake.mark;
    const msg = fake.postMessage({ user: makeUser('uma'), channel: pets, attachments: [dog, cat] });
    const reply = await fake.waitForRequest((r) => r.method === 'POST' && r.path === `/channels/${pets.id}/messages`, { since: mark, what: 'the auto-detect reply' });
    expect(reply.body.message_reference.message_id).toBe(msg.id);
    expect(reply.body.allowed_mentions).toMatchObject({ parse: [], replied_user: false });
    expect(reply.body.embeds.map((e: any) => e.title)).toEqual(['🐶 Dog · pup.png', '🐱 Cat · kit.png']);

    const many = await Promise.all(Array.from({ length: 12 }, async (_, k) => fake.attachment(`p${k}.png`, await makePhoto(DOGGY), { contentType: 'image/png', width: 64, height: 48 })));
    const mark2 = fake.mark;
    fake.postMessage({ user: makeUser('vic'), channel: pets, attachments: many });
    const reply2 = await fake.waitForRequest((r) => r.method === 'POST' && r.path === `/channels/${pets.id}/messages`, { since: mark2, what: 'the reply to 12 images' });
    expect(reply2.body.embeds).toHaveLength(10);
    expect(fake.downloads(many[11]!)).toBe(0);

    // Another channel is still off.
    const quiet = fake.attachment('elsewhere.png', await makePhoto(DOGGY), { contentType: 'image/png', width: 64, height: 48 });
    await handled(Events.MessageCreate, () => fake.postMessage({ user: makeUser('wes'), channel: fake.channel('quiet'), attachments: [quiet] }));
    expect(fake.downloads(quiet)).toBe(0);
  });

  it('in reaction mode: reacts 🐶/🐱 instead of replying; switched off again: silent', async () => {
    const pets = fake.channel('pets');
    const style = settings('answer-style', [{ name: 'style', type: 3, value: 'react' }]);
    expect((await fake.originalEdit(style)).body.content).toContain('answer style: **reaction**');

    const cat = fake.attachment('whiskers.png', await makePhoto(CATTY), { contentType: 'image/png', width: 64, height: 48 });
    const mark = fake.mark;
    let msg: any;
    await handled(Events.MessageCreate, () => (msg = fake.postMessage({ user: makeUser('xia'), channel: pets, attachments: [cat] })));
    const reactions = fake.requests.filter((r) => r.seq >= mark && r.method === 'PUT');
    expect(reactions.map((r) => r.path)).toEqual([`/channels/${pets.id}/messages/${msg.id}/reactions/🐱/@me`]);
    expect(fake.requests.filter((r) => r.seq >= mark && r.method === 'POST' && r.path.startsWith('/channels/'))).toEqual([]);

    const off = settings('auto-detect', [{ name: 'enabled', type: 5, value: false }]);
    expect((await fake.originalEdit(off)).body.content).toContain('Auto-detect is now **off**');
    const show = settings('show', []);
    expect((await fake.originalEdit(show)).body.content).toBe(
      'Server-wide auto-detect: **off** · answer style: **reaction** · this channel: **off**',
    );
    const dog = fake.attachment('late.png', await makePhoto(DOGGY), { contentType: 'image/png', width: 64, height: 48 });
    await handled(Events.MessageCreate, () => fake.postMessage({ user: makeUser('yan'), channel: pets, attachments: [dog] }));
    expect(fake.downloads(dog)).toBe(0);
  });

  it('server-wide switch reaches every channel; a user past their limit is told once in words, then with ⏳', async () => {
    const quiet = fake.channel('quiet');
    const on = settings('auto-detect', [{ name: 'enabled', type: 5, value: true }, { name: 'where', type: 3, value: 'server' }], { channel: 'general' });
    expect((await fake.originalEdit(on)).body.content).toContain('Auto-detect is now **on** for the whole server');
    await fake.originalEdit(settings('answer-style', [{ name: 'style', type: 3, value: 'reply' }]));

    const user = makeUser('zed');
    const photo = await makePhoto(DOGGY);
    const post = async () => {
      const att = fake.attachment('burst.png', photo, { contentType: 'image/png', width: 64, height: 48 });
      const mark = fake.mark;
      await handled(Events.MessageCreate, () => fake.postMessage({ user, channel: quiet, attachments: [att] }));
      return fake.requests.filter((r) => r.seq >= mark && r.method === 'POST' && r.path === `/channels/${quiet.id}/messages`);
    };
    const [first] = await post();
    expect(first!.body.embeds[0].title).toBe('🐶 Dog · burst.png');
    const [second] = await post();
    expect(second!.body.content).toMatch(/^⏳ Easy there! You can ask me again in \d+ s\.$/);
    const mark = fake.mark;
    expect(await post()).toEqual([]);
    expect(fake.requests.filter((r) => r.seq >= mark && r.method === 'PUT').map((r) => r.path)).toEqual([expect.stringMatching(/\/reactions\/⏳\/@me$/)]);
  });
});

describe('/catdog-stats', () => {
  it("counts this server's verdicts and gives the cat : dog ratio", async () => {
    const photos = ['dog', 'cat', 'dog', 'neither'] as const;
    const colour = { dog: DOGGY, cat: CATTY, neither: GRASSY };
    const channel = statsGuild.channels[0]!;
    const empty = fake.slashCommand('catdog-stats', { user: makeUser('stat0'), guild: statsGuild, channel });
    expect((await fake.originalEdit(empty)).body.embeds[0].description).toBe('No photos yet. Try `/catdog` with a photo!');
    for (const [k, label] of photos.entries()) {
      const att = fake.attachment(`${label}.png`, await makePhoto(colour[label]), { contentType: 'image/png' });
      const i = fake.slashCommand('catdog', { user: makeUser(`stat${k + 1}`), guild: statsGuild, channel, options: [{ name: 'image', type: 11, value: att.id }], attachments: [att] });
      await fake.originalEdit(i);
    }
    const i = fake.slashCommand('catdog-stats', { user: makeUser('stat9'), guild: statsGuild, channel });
    const defer = await fake.callback(i);
    expect((defer.body.data?.flags ?? 0) & EPHEMERAL).toBe(0);
    const embed = (await fake.originalEdit(i)).body.embeds[0];
    expect(embed.title).toBe('📊 Cat or dog? · Stats Club');
    expect(embed.description).toBe('**4** photos looked at.');
    expect(embed.fields).toEqual([
      { name: '🐶 Dogs', value: '2 (50%)', inline: true },
      { name: '🐱 Cats', value: '1 (25%)', inline: true },
      { name: '🤷 Neither', value: '1 (25%)', inline: true },
      { name: 'Cat : dog', value: '1 : 2 (33% cats, 67% dogs)' },
    ]);
  });
});

describe('metrics after all that', () => {
  it('counts requests by surface and outcome', async () => {
    const text = await (await fetch(`${app.web.url}/metrics`)).text();
    const count = (labels: string) => Number(new RegExp(`^catdog_requests_total\\{${labels}\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
    expect(count('surface="slash",outcome="ok"')).toBeGreaterThanOrEqual(10);
    expect(count('surface="slash",outcome="cooldown"')).toBe(2);
    expect(count('surface="slash",outcome="busy"')).toBe(1);
    expect(count('surface="slash",outcome="host_not_allowed"')).toBe(1);
    expect(count('surface="slash",outcome="too_large"')).toBe(2);
    expect(count('surface="slash",outcome="forbidden"')).toBe(1);
    expect(count('surface="context_menu",outcome="ok"')).toBe(1);
    expect(count('surface="auto_detect",outcome="ok"')).toBeGreaterThanOrEqual(3);
    expect(count('surface="auto_detect",outcome="cooldown"')).toBe(2);
    expect(text).toMatch(/^catdog_discord_connected 1$/m);
  });

  it('the store holds settings and counts, but no photo and no attachment link', async () => {
    const db = readFileSync(app.config.store.kind === 'sqlite' ? app.config.store.path : '');
    expect(db.includes(Buffer.from(`stats:${statsGuild.id}`))).toBe(true); // it is the live store
    expect(db.includes(Buffer.from('/attachments/'))).toBe(false);
    expect(db.includes(Buffer.from('127.0.0.1'))).toBe(false);
    expect(db.includes(Buffer.from('PNG'))).toBe(false);
  });
});

describe('without the Message Content intent', () => {
  it('explains how to fix a refused intent, and runs with MESSAGE_CONTENT_INTENT=false; the context menu still works', async () => {
    const strict = await FakeDiscord.start({ disallowedIntents: GatewayIntentBits.MessageContent });
    const dir = mkdtempSync(join(tmpdir(), 'catdog-intents-'));
    const env = {
      DISCORD_TOKEN: strict.token,
      DISCORD_API_URL: strict.apiUrl,
      ATTACHMENT_HOSTS: '127.0.0.1',
      PORT: '0',
      WEB_HOST: '127.0.0.1',
      DATA_DIR: dir,
      RATE_BURST: '0',
    };
    let second: App | null = null;
    try {
      await expect(main({ env, classifier, handleSignals: false, log: () => {} })).rejects.toThrow(
        /^Discord refused the Message Content intent \(used by auto-detect\)\. Turn it on in the Developer Portal .* or set MESSAGE_CONTENT_INTENT=false/,
      );
      second = await main({ env: { ...env, MESSAGE_CONTENT_INTENT: 'false' }, classifier, handleSignals: false, log: () => {} });
      expect(strict.identifies.at(-1).intents).toBe(GatewayIntentBits.Guilds | GatewayIntentBits.GuildMessages);
      // No DISCORD_APP_ID: commands were registered globally under the id from READY.
      expect(strict.commands.get('global')).toHaveLength(8);
      const dog = strict.attachment('dog.png', await makePhoto(DOGGY), { contentType: 'image/png', width: 64, height: 48 });
      const target = strict.existingMessage({ user: makeUser('poster'), channel: strict.channel('general'), attachments: [dog] });
      const i = strict.messageCommand('Cat or dog?', { user: makeUser('reader'), target });
      expect((await strict.originalEdit(i)).body.embeds.map((e: any) => e.title)).toEqual(['🐶 Dog · dog.png']);

      const on = strict.slashCommand('catdog-settings', {
        user: makeUser('admin'),
        permissions: DEFAULT_PERMISSIONS | PermissionFlagsBits.ManageGuild,
        options: [{ name: 'auto-detect', type: 1, options: [{ name: 'enabled', type: 5, value: true }] }],
      });
      expect((await strict.originalEdit(on)).body.content).toContain('runs without the Message Content intent');
    } finally {
      await second?.shutdown('test over');
      await strict.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
