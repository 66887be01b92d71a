/**
 * Issue #8, part 1: admin operations change the model for every server, so the gate is global.
 * The bot (src/main.ts, real discord.js Client, fake Discord, mean-colour test classifier) reads
 * its owner from GET /applications/@me at startup and says who the admins are; the Administrator
 * permission counts only in the home server (DISCORD_GUILD_ID), never in a server someone just
 * created. An admitted admin gets the command's own answer (with the test classifier: that admin
 * operations need the real one); anyone else the refusal, logged.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MessageFlags, PermissionFlagsBits } from 'discord.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main, type App } from '../../src/main.ts';
import { DEFAULT_PERMISSIONS, FakeDiscord, fakeDiscordEnv, makeUser, snowflake, type FakeGuild } from '../helpers/fake-discord.ts';
import { MeanColourTestClassifier } from '../helpers/test-classifier.ts';
import { requireShared } from '../helpers/shared.ts';

const ADMINISTRATOR = DEFAULT_PERMISSIONS | PermissionFlagsBits.Administrator;
const mallorysServer: FakeGuild = {
  id: snowflake(),
  name: "Mallory's brand-new server",
  channels: [{ id: snowflake(), name: 'lobby', type: 0 }],
  everyonePermissions: DEFAULT_PERMISSIONS,
};

let fake: FakeDiscord;
let app: App;
let dataDir: string;
const logs: string[] = [];

async function start(f: FakeDiscord, dir: string, log: string[], extra: Record<string, string> = {}): Promise<App> {
  return main({
    env: { ...fakeDiscordEnv(f, dir), RATE_BURST: '0', ...extra },
    classifier: new MeanColourTestClassifier(),
    handleSignals: false,
    log: (l) => log.push(l),
  });
}

/** What the bot answered: 'refused' (the admin refusal), or 'admitted' (the command ran). */
async function outcome(f: FakeDiscord, i: { id: string; token: string }): Promise<'refused' | 'admitted'> {
  const cb = await f.callback(i);
  if (cb.body.type === 4) {
    expect(cb.body.data.flags & MessageFlags.Ephemeral).toBe(MessageFlags.Ephemeral);
    expect(cb.body.data.content).toMatch(/^🔒 Only the bot's admins can do that/);
    return 'refused';
  }
  expect((await f.originalEdit(i)).body.content).toMatch(/Admin operations need the real classifier/);
  return 'admitted';
}

beforeAll(async () => {
  fake = await FakeDiscord.start();
  fake.guilds.push(mallorysServer);
  dataDir = mkdtempSync(join(tmpdir(), 'catdog-gate-'));
  app = await start(fake, dataDir, logs);
});

afterAll(async () => {
  await app?.shutdown('test over');
  await fake?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('the admin gate', () => {
  it('reads the owner from GET /applications/@me at startup and says who the admins are', () => {
    const lookup = fake.requests.find((r) => r.method === 'GET' && r.path === '/applications/@me');
    expect(lookup?.headers.authorization).toBe(`Bot ${fake.token}`);
    expect(logs).toContainEqual(
      `admin: admins are the application owner owner (${fake.owner.id}), in every server; in the home server ${fake.guild().id} also members with the Administrator permission; nobody else, in any other server`,
    );
  });

  it("refuses an Administrator of another server (one they just created) for /model rollback, /retrain, /score and /jobs", async () => {
    const mallory = makeUser('mallory');
    const lobby = mallorysServer.channels[0]!;
    for (const [name, options] of [['model', [{ name: 'rollback', type: 1, options: [] }]], ['retrain', []], ['score', []], ['jobs', []]] as const) {
      const i = fake.slashCommand(name, { user: mallory, guild: mallorysServer, channel: lobby, permissions: ADMINISTRATOR, options: [...options] });
      expect(await outcome(fake, i)).toBe('refused');
    }
    await expect.poll(() => logs.some((l) => l.includes(`admin: refused /model to mallory (${mallory.id}) in guild ${mallorysServer.id}`))).toBe(true);
  });

  it('admits the owner anywhere, and an Administrator in the home server only', async () => {
    const lobby = mallorysServer.channels[0]!;
    const owner = fake.owner;
    expect(await outcome(fake, fake.slashCommand('jobs', { user: owner, guild: mallorysServer, channel: lobby }))).toBe('admitted');
    expect(await outcome(fake, fake.slashCommand('jobs', { user: makeUser('homeadmin'), permissions: ADMINISTRATOR }))).toBe('admitted');
    expect(await outcome(fake, fake.slashCommand('jobs', { user: makeUser('member') }))).toBe('refused');
  });

  it('answers GET /applications/@me with what Discord documents (the fake, checked against the OpenAPI schema)', async () => {
    const spec = requireShared('reference', 'discord-openapi.json');
    if (!spec) return;
    const schemas = JSON.parse(readFileSync(spec, 'utf8')).components.schemas;
    const body = await (await fetch(`${fake.apiUrl}/v10/applications/@me`, { headers: { authorization: `Bot ${fake.token}` } })).json();
    for (const key of schemas.PrivateApplicationResponse.required) expect(body).toHaveProperty(key);
    fake.team = { id: snowflake(), name: 'Pet Team', ownerUserId: fake.owner.id, members: [{ user: fake.owner, state: 2, role: 'admin' }] };
    try {
      const team = (await (await fetch(`${fake.apiUrl}/v10/applications/@me`, { headers: { authorization: `Bot ${fake.token}` } })).json()).team;
      for (const key of schemas.TeamResponse.required) expect(team).toHaveProperty(key);
      for (const key of schemas.TeamMemberResponse.required) expect(team.members[0]).toHaveProperty(key);
    } finally {
      fake.team = null;
    }
  });
});

describe('a team-owned application', () => {
  it("admits the team's accepted members, not those only invited, and refuses roles outside the home server", async () => {
    const f = await FakeDiscord.start();
    f.guilds.push(mallorysServer);
    const dev = makeUser('dev');
    const invited = makeUser('invited');
    f.team = { id: snowflake(), name: 'Pet Team', ownerUserId: dev.id, members: [{ user: dev, state: 2, role: 'developer' }, { user: invited, state: 1, role: 'developer' }] };
    const dir = mkdtempSync(join(tmpdir(), 'catdog-team-'));
    const log: string[] = [];
    const ROLE = '777000000000000778';
    f.guild().roles = [{ id: ROLE, name: 'catdog admins' }];
    let second: App | null = null;
    try {
      second = await start(f, dir, log, { ADMIN_ROLE_IDS: ROLE });
      expect(log.find((l) => l.startsWith('admin: admins are'))).toBe(
        `admin: admins are the members of the team "Pet Team" that owns the application (dev ${dev.id}), in every server; in the home server ${f.guild().id} also members with a role in ADMIN_ROLE_IDS (${ROLE}); nobody else, in any other server`,
      );
      const lobby = mallorysServer.channels[0]!;
      expect(await outcome(f, f.slashCommand('jobs', { user: dev, guild: mallorysServer, channel: lobby }))).toBe('admitted');
      expect(await outcome(f, f.slashCommand('jobs', { user: invited }))).toBe('refused');
      expect(await outcome(f, f.slashCommand('jobs', { user: makeUser('roled'), roles: [ROLE] }))).toBe('admitted');
      expect(await outcome(f, f.slashCommand('jobs', { user: makeUser('roled2'), roles: [ROLE], guild: mallorysServer, channel: lobby, permissions: ADMINISTRATOR }))).toBe('refused');
    } finally {
      await second?.shutdown('test over');
      await f.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
