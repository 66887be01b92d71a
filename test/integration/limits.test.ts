/**
 * Issue #8, parts 2 and 4, on the bot (src/main.ts, real discord.js Client, fake Discord, the
 * mean-colour test classifier behind the real queue):
 * - a person may send a burst of photos (RATE_BURST), and every refused request gets a short
 *   ephemeral answer saying when to try again: nothing is deferred and deleted, nothing silent;
 * - a request takes its queue place before its photo is downloaded: requests refused as busy
 *   download nothing;
 * - one server cannot take every waiting place (GUILD_QUEUE_SIZE).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MessageFlags } from 'discord.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main, type App } from '../../src/main.ts';
import { DEFAULT_PERMISSIONS, FakeDiscord, fakeDiscordEnv, makeUser, snowflake, type FakeGuild } from '../helpers/fake-discord.ts';
import { DOGGY, MeanColourTestClassifier, makePhoto } from '../helpers/test-classifier.ts';

const EPHEMERAL = MessageFlags.Ephemeral;
const BUSY = "⏳ I'm busy with other photos right now. Please try again in a moment.";
const serverB: FakeGuild = { id: snowflake(), name: 'Server B', channels: [{ id: snowflake(), name: 'b', type: 0 }], everyonePermissions: DEFAULT_PERMISSIONS };

let fake: FakeDiscord;
let app: App;
let classifier: MeanColourTestClassifier;
let dataDir: string;
let photo: Buffer;

beforeAll(async () => {
  fake = await FakeDiscord.start();
  fake.guilds.push(serverB);
  dataDir = mkdtempSync(join(tmpdir(), 'catdog-limits-'));
  classifier = new MeanColourTestClassifier();
  photo = await makePhoto(DOGGY);
  app = await main({
    env: {
      ...fakeDiscordEnv(fake, dataDir),
      RATE_BURST: '5',
      RATE_REFILL_SECONDS: '3600',
      QUEUE_SIZE: '6',
      GUILD_QUEUE_SIZE: '3',
      CLASSIFY_CONCURRENCY: '1',
      GUILD_CONCURRENCY: '1',
    },
    classifier,
    handleSignals: false,
    log: () => {},
  });
});

afterAll(async () => {
  await app?.shutdown('test over');
  await fake?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

function ask(user: ReturnType<typeof makeUser>, name: string, guild?: FakeGuild) {
  const att = fake.attachment(`${name}.png`, photo, { contentType: 'image/png' });
  const i = fake.slashCommand('catdog', { user, options: [{ name: 'image', type: 11, value: att.id }], attachments: [att], ...(guild ? { guild, channel: guild.channels[0] } : {}) });
  return { i, att };
}

describe('a person sending photos one after another', () => {
  it('gets a burst of answers, then a short ephemeral "try again in N s" for every refused one', async () => {
    const user = makeUser('newcomer');
    for (let k = 1; k <= 5; k++) {
      const { i } = ask(user, `photo${k}`);
      expect((await fake.originalEdit(i)).body.embeds[0].title).toBe(`🐶 Dog · photo${k}.png`);
    }
    for (let k = 6; k <= 8; k++) {
      const { i, att } = ask(user, `photo${k}`);
      const cb = await fake.callback(i);
      expect(cb.body.type).toBe(4); // an answer, not a deferral to be deleted
      expect(cb.body.data.flags & EPHEMERAL).toBe(EPHEMERAL);
      expect(cb.body.data.content).toMatch(/^⏳ Easy there! You can ask me again in \d+ (s|min)/);
      expect(fake.downloads(att)).toBe(0);
    }
    expect(fake.requests.filter((r) => r.method === 'DELETE' && r.path.includes('/messages/@original'))).toEqual([]);
  });
});

describe('admission before bytes, and fairness for waiting places', () => {
  it('a server cannot take every waiting place; requests refused as busy download nothing', async () => {
    const hold = classifier.hold();
    // Server A (the home one): 12 people at once. 1 runs (held), 3 more may wait (GUILD_QUEUE_SIZE).
    const a = Array.from({ length: 12 }, (_, k) => ask(makeUser(`a${k}`), `a${k}`));
    await hold.reached;
    const busyEdit = (i: { token: string }) =>
      fake.requests.some((r) => r.method === 'PATCH' && r.path === `/webhooks/${fake.appId}/${i.token}/messages/@original` && r.body?.content === BUSY);
    await expect.poll(() => a.filter(({ i }) => busyEdit(i)).length, { timeout: 15_000 }).toBe(8);
    expect(await app.services.classifier.stats()).toMatchObject({ running: 1, waiting: 3 });
    const answers = a.map(({ i }) => (busyEdit(i) ? BUSY : 'admitted'));
    const busy = a.filter((_, k) => answers[k] === BUSY);
    for (const { att } of busy) expect(fake.downloads(att)).toBe(0);

    // Server B still gets a place.
    const b = ask(makeUser('b0'), 'b0', serverB);
    hold.release();
    expect((await fake.originalEdit(b.i)).body.embeds[0].title).toBe('🐶 Dog · b0.png');
    for (const [k, { i }] of a.entries()) {
      if (answers[k] !== BUSY) expect((await fake.originalEdit(i)).body.embeds[0].title).toBe(`🐶 Dog · a${k}.png`);
    }
  });
});
