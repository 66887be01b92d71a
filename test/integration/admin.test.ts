/**
 * Admin operations end to end: src/main.ts with the REAL classifier (ResNet50 on ONNX Runtime,
 * no head to start with) against the fake Discord, training on 40 real photos copied out of
 * ../shared/data/dogs-vs-cats/train.zip, with a temporary model registry (CATDOG_MODELS_DIR) and
 * DATA_DIR, so the repository's models are never touched.
 *
 * Covers: admin vs non-admin (refusal + log) for commands and buttons, the live progress message
 * (throttled edits, then the result with the curves PNG), one job at a time, cancel (active model
 * untouched), promote (registry AND the live classifier's head, checked with /catdog), discard,
 * /score with labels, /model show|list|rollback, /jobs, and a process killed with SIGKILL in the
 * middle of a retrain: after the restart the job shows as interrupted and Resume completes it.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MessageFlags, PermissionFlagsBits } from 'discord.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { main, type App } from '../../src/main.ts';
import type { QueuedClassifier } from '../../src/queue.ts';
import { Classifier, headId } from '../../src/model/classifier.ts';
import { Registry } from '../../src/model/registry.ts';
import { modelSettings, type ModelSettings } from '../../src/model/settings.ts';
import { DEFAULT_PERMISSIONS, FakeDiscord, makeUser, type RecordedRequest, fakeDiscordEnv } from '../helpers/fake-discord.ts';
import { runTs } from '../helpers/processes.ts';
import { requireShared } from '../helpers/shared.ts';
import { copyPhotos, temporaryModelsDir, trainingNames } from '../helpers/training-photos.ts';

const trainZip = requireShared('data', 'dogs-vs-cats', 'train.zip');
const testZip = requireShared('data', 'dogs-vs-cats', 'test.zip');
const testLabels = requireShared('data', 'dogs-vs-cats', 'test_labels.csv');
const haveData = Boolean(trainZip && testZip && testLabels);

const PROGRESS_MS = 1000;
const EPHEMERAL = MessageFlags.Ephemeral;
const alice = makeUser('alice'); // in ADMIN_USER_IDS
const carol = makeUser('carol'); // has the admin role
const bob = makeUser('bob'); // not an admin, even with the Administrator permission
const ADMIN_ROLE = '777000000000000777';

let fake: FakeDiscord;
let app: App | null = null;
let root: string;
let trainDir: string;
const logs: string[] = [];
/** A temporary models folder (the repository's weights and graphs linked in, an empty registry). */
let model: ModelSettings;
let registry: Registry;

function env(dataDir: string): Record<string, string> {
  return {
    ...fakeDiscordEnv(fake, dataDir),
    RATE_BURST: '0',
    ADMIN_USER_IDS: alice.id,
    ADMIN_ROLE_IDS: ADMIN_ROLE,
    TRAIN_DATA: trainDir,
    TEST_DATA: join(root, 'test'),
    TEST_LABELS: testLabels!,
    CATDOG_MODELS_DIR: model.modelsDir,
    CATDOG_REGISTRY_DIR: model.registryDir,
  };
}

async function startApp(dataDir: string): Promise<App> {
  const classifier = await Classifier.load({ model });
  return main({ env: env(dataDir), classifier, handleSignals: false, log: (l) => logs.push(l), jobProgressIntervalMs: PROGRESS_MS });
}

function isEditOf(token: string) {
  return (r: RecordedRequest) => r.method === 'PATCH' && r.path === `/webhooks/${fake.appId}/${token}/messages/@original` && r.status === 200;
}

function editsOf(token: string): RecordedRequest[] {
  return fake.requests.filter(isEditOf(token));
}

function waitEdit(token: string, pred: (r: RecordedRequest) => boolean, what: string, timeoutMs = 60_000): Promise<RecordedRequest> {
  const match = isEditOf(token);
  return fake.waitForRequest((r) => match(r) && pred(r), { timeoutMs, what });
}

const title = (r: RecordedRequest): string => r.body?.embeds?.[0]?.title ?? '';
const buttonIds = (r: RecordedRequest): string[] => (r.body?.components ?? []).flatMap((row: any) => row.components.map((c: any) => c.custom_id));

/** The ephemeral (type 4) answer to an interaction. */
async function immediateReply(i: { id: string }): Promise<any> {
  const cb = await fake.callback(i);
  return cb.body;
}

/** Runs /retrain as alice and waits for its final message. */
async function retrainToTheEnd(): Promise<{ i: { id: string; token: string }; final: RecordedRequest }> {
  const i = fake.slashCommand('retrain', { user: alice });
  const final = await waitEdit(i.token, (r) => / — done$/.test(title(r)) || / — (failed|cancelled|interrupted)$/.test(title(r)), 'the end of the retrain');
  expect(title(final)).toMatch(/ — done$/);
  return { i, final };
}

/**
 * The active model: the one a test before promoted, or, when that test failed before promoting,
 * one retrained and promoted here, so that a test needing an active model does not fail with it.
 */
async function activeModel(): Promise<string> {
  const active = registry.readActiveState().active;
  if (active) return active;
  const { i, final } = await retrainToTheEnd();
  const { i: press } = await pressAndWait(i, buttonIds(final)[0]!);
  await waitEdit(press.token, () => true, 'the promoted message');
  return registry.readActiveState().active!;
}

function modelIdOf(final: RecordedRequest): string {
  const promote = buttonIds(final).find((id) => id.startsWith('model-promote:'));
  return promote!.split(':')[1]!;
}

async function pressAndWait(messageToken: { token: string }, customId: string, user = alice): Promise<{ i: { id: string; token: string } }> {
  const messageId = fake.originalId(messageToken)!;
  const i = fake.pressButton(messageId, customId, { user, roles: user === carol ? [ADMIN_ROLE] : [] });
  return { i };
}

beforeAll(async () => {
  if (!haveData) return;
  root = mkdtempSync(join(tmpdir(), 'catdog-admin-'));
  model = modelSettings({ modelsDir: temporaryModelsDir(root) });
  registry = new Registry(model.registryDir);
  trainDir = join(root, 'train');
  expect(await copyPhotos(trainZip!, trainDir, trainingNames(0, 20))).toBe(40);
  // Ten test photos; test_labels.csv has a row for each of Kaggle's test ids.
  expect(await copyPhotos(testZip!, join(root, 'test'), (n) => /^([1-9]|10)\.jpg$/.test(n))).toBe(10);
  fake = await FakeDiscord.start({ heartbeatIntervalMs: 1000 });
  fake.guild().roles = [{ id: ADMIN_ROLE, name: 'catdog admins' }];
  app = await startApp(join(root, 'data'));
});

afterAll(async () => {
  await app?.shutdown('test over');
  await fake?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe.skipIf(!haveData)('admin operations', () => {
  // A test that fails mid-job leaves no job running behind it for the next one.
  afterEach(async () => {
    const jobs = app?.services.admin?.jobs;
    const running = await jobs?.current();
    if (!jobs || !running) return;
    await jobs.cancel(running.id, { id: alice.id, name: 'alice' });
    await expect.poll(() => jobs.current(), { timeout: 60_000 }).toBeNull();
  });

  it('registers the admin commands with default_member_permissions Administrator', () => {
    const registered = fake.commands.get(fake.guild().id)!;
    for (const name of ['retrain', 'score', 'model', 'jobs']) {
      expect(registered.find((c) => c.name === name)?.default_member_permissions).toBe(PermissionFlagsBits.Administrator.toString());
    }
  });

  it('refuses non-admins clearly (even with Administrator when admins are listed) and logs the attempt', async () => {
    for (const name of ['retrain', 'score', 'jobs']) {
      const i = fake.slashCommand(name, { user: bob, permissions: DEFAULT_PERMISSIONS | PermissionFlagsBits.Administrator });
      const body = await immediateReply(i);
      expect(body.type).toBe(4);
      expect(body.data.flags & EPHEMERAL).toBe(EPHEMERAL);
      expect(body.data.content).toMatch(/^🔒 Only the bot's admins can do that .*Your attempt has been logged\.$/);
      await expect.poll(() => logs.some((l) => l.includes(`admin: refused /${name} to bob (${bob.id})`))).toBe(true);
    }
    const i = fake.slashCommand('model', { user: bob, options: [{ name: 'show', type: 1, options: [] }] });
    expect((await immediateReply(i)).data.content).toMatch(/Only the bot's admins/);
    // A member with the admin role is one.
    const j = fake.slashCommand('jobs', { user: carol, roles: [ADMIN_ROLE] });
    const edit = await fake.originalEdit(j);
    expect(edit.body.embeds[0].title).toBe('🧰 Jobs');
    expect(edit.body.embeds[0].fields[1].value).toBe('no jobs yet');
  });

  it('/score with no active model says so at once', async () => {
    const i = fake.slashCommand('score', { user: alice });
    const edit = await fake.originalEdit(i);
    expect(edit.body.content).toMatch(/No model is active, so there is nothing to score with/);
    expect(await app!.services.admin!.jobs.recent()).toEqual([]);
  });

  it('cancel: a retrain cancelled mid-way ends cancelled; the active model and the registry are untouched', async () => {
    const i = fake.slashCommand('retrain', { user: alice });
    const progress = await waitEdit(i.token, (r) => buttonIds(r).some((b) => b.startsWith('job-cancel:')), 'a progress message with Cancel');
    const cancelId = buttonIds(progress).find((b) => b.startsWith('job-cancel:'))!;
    // bob may not press it.
    const refused = fake.pressButton(fake.originalId(i)!, cancelId, { user: bob });
    expect((await immediateReply(refused)).data.content).toMatch(/Only the bot's admins/);
    await expect.poll(() => logs.some((l) => l.includes('admin: refused the button job-cancel to bob'))).toBe(true);
    const press = fake.pressButton(fake.originalId(i)!, cancelId, { user: alice });
    expect((await immediateReply(press)).type).toBe(6); // deferred update: the job's message tells the end
    const end = await waitEdit(i.token, (r) => / — cancelled$/.test(title(r)), 'the cancelled message');
    expect(end.body.embeds[0].description).toMatch(/Cancelled by alice after .*The active model is unchanged/);
    expect(end.body.components).toEqual([]);
    const [record] = await app!.services.admin!.jobs.recent(1);
    expect(record).toMatchObject({ kind: 'retrain', status: 'cancelled', cancelledBy: { id: alice.id, name: 'alice' }, result: null });
    expect(registry.readActiveState().active).toBeNull();
    expect(await registry.listModels()).toEqual([]);
    expect(((app!.services.classifier as QueuedClassifier).classifier as Classifier).activeHead).toBeNull();
  });

  it('retrain: throttled progress edits, one job at a time, then the comparison and the curves; Promote swaps the live head', async () => {
    const sentAt = performance.now();
    const i = fake.slashCommand('retrain', { user: alice });
    await waitEdit(i.token, (r) => title(r).endsWith('— running'), 'the first progress edit');
    // A second job is told what runs.
    const second = fake.slashCommand('score', { user: carol, roles: [ADMIN_ROLE] });
    const busy = await fake.originalEdit(second);
    expect(busy.body.content).toMatch(/^⏳ One job at a time, and this one is running: #\d+ retrain by alice — ⏳ running/);

    const final = await waitEdit(i.token, (r) => / — (done|failed)$/.test(title(r)), 'the end of the retrain');
    const finalAt = performance.now();
    expect(title(final)).toMatch(/^🛠️ Retrain #\d+ — done$/);
    const edits = editsOf(i.token);
    const progressEdits = edits.filter((r) => title(r).endsWith('— running'));
    expect(progressEdits.length).toBeGreaterThanOrEqual(2); // the first, and at least one while it worked
    const withBar = progressEdits.filter((r) => /`[█░]{20}` \d+% · \d+\/40 photos/.test(r.body.embeds[0].description));
    expect(withBar.length).toBeGreaterThanOrEqual(1);
    expect(withBar.at(-1)!.body.embeds[0].description).toMatch(/images\/s · (ETA|done)/);
    for (const r of progressEdits) expect(buttonIds(r)).toEqual([expect.stringMatching(/^job-cancel:\d+$/)]);
    // Throttled: the throttle starts the edits (the final one too) at least PROGRESS_MS apart, and
    // all of them started after the command was sent and before the final edit arrived. Slow
    // networks or busy cores only widen that span; test/unit/jobs.test.ts checks each gap on the
    // throttle's own clock.
    expect((edits.length - 1) * PROGRESS_MS).toBeLessThanOrEqual(finalAt - sentAt);

    const embed = final.body.embeds[0];
    expect(embed.fields[0].name).toMatch(/^New model `m-\d{8}T\d{6}\.\d{3}Z(-\d+)?` \(validation\)$/);
    expect(embed.fields[0].value).toMatch(/log loss \*\*\d\.\d{4}\*\* · accuracy \*\*\d+\.\d{2}%\*\*\n(seed|logreg)/);
    expect(embed.fields[1]).toEqual({ name: 'Active model', value: 'none yet: promoting makes this the first.' });
    expect(embed.image.url).toBe('attachment://curves.png');
    expect(final.files.map((f) => f.name)).toEqual(['curves.png']);
    expect(final.files[0]!.bytes.subarray(1, 4).toString('latin1')).toBe('PNG');
    const firstModel = modelIdOf(final);
    const jobId = (await app!.services.admin!.jobs.recent(1))[0]!.id;
    expect(buttonIds(final)).toEqual([`model-promote:${firstModel}:${jobId}`, `model-discard:${firstModel}:${jobId}`]);
    // Stored, not active.
    expect((await registry.listModels()).map((m) => m.id)).toEqual([firstModel]);
    expect(registry.readActiveState().active).toBeNull();

    const { i: press } = await pressAndWait(i, buttonIds(final)[0]!);
    expect((await immediateReply(press)).type).toBe(6);
    const promoted = await waitEdit(press.token, () => true, 'the promoted message');
    expect(promoted.body.embeds[0].description).toMatch(new RegExp(`^🚀 \\*\\*Promoted\\*\\* by alice: \`${firstModel}\` is now the active model`));
    expect(promoted.body.components).toEqual([]);
    expect(registry.readActiveState().active).toBe(firstModel);
    const live = ((app!.services.classifier as QueuedClassifier).classifier as Classifier).activeHead;
    expect(live && headId(live)).toBe(firstModel);
    const [record] = await app!.services.admin!.jobs.recent(1);
    expect(record!.decision).toMatchObject({ action: 'promoted', by: { name: 'alice' } });

    // /catdog answers with the new model at once, with no restart.
    const photo = readFileSync(join(trainDir, 'dog.3.jpg'));
    const att = fake.attachment('dog.3.jpg', photo, { contentType: 'image/jpeg', width: 100, height: 100 });
    const ask = fake.slashCommand('catdog', { user: makeUser('dora'), options: [{ name: 'image', type: 11, value: att.id }], attachments: [att] });
    const answer = await fake.originalEdit(ask);
    expect(answer.body.embeds[0].footer.text).toBe(`model: ${firstModel}`);
    expect(answer.body.embeds[0].title).toMatch(/^🐶 Dog/);
  });

  it('discard: the candidate is deleted, the active model stays; the comparison shows the active model', async () => {
    const firstModel = await activeModel();
    const modelsBefore = (await registry.listModels()).map((m) => m.id);
    const { i, final } = await retrainToTheEnd();
    const fields = final.body.embeds[0].fields;
    expect(fields[1].name).toBe(`Active model \`${firstModel}\``);
    expect(fields[2].name).toBe('Comparison');
    const candidate = modelIdOf(final);
    expect(candidate).not.toBe(firstModel);
    const discardId = buttonIds(final).find((b) => b.startsWith('model-discard:'))!;
    // bob may not press it either.
    const refused = fake.pressButton(fake.originalId(i)!, discardId, { user: bob });
    expect((await immediateReply(refused)).data.content).toMatch(/Only the bot's admins/);
    // Crafted ids (a modified client): a path out of the registry, and a model that is not this job's.
    const outside = join(registry.dir, '..', 'x');
    mkdirSync(outside, { recursive: true });
    writeFileSync(join(outside, 'head.json'), '{}');
    const jobId = discardId.split(':')[2]!;
    for (const crafted of [`model-discard:../x:${jobId}`, `model-discard:${firstModel}:${jobId}`, `model-promote:../x:${jobId}`]) {
      const press = fake.pressButton(fake.originalId(i)!, crafted, { user: alice, crafted: true });
      expect((await immediateReply(press)).data.content).toBe('That button does not match a retrain and its model; nothing was changed.');
    }
    expect(existsSync(join(outside, 'head.json'))).toBe(true);
    expect((await registry.listModels()).map((m) => m.id)).toContain(candidate);
    const { i: press } = await pressAndWait(i, discardId, carol);
    const done = await waitEdit(press.token, () => true, 'the discarded message');
    expect(done.body.embeds[0].description).toBe(`🗑️ **Discarded** by carol: model \`${candidate}\` deleted; the active model is unchanged.`);
    expect((await registry.listModels()).map((m) => m.id)).toEqual(modelsBefore);
    expect(registry.readActiveState().active).toBe(firstModel);
  });

  it('/score: submission.csv, log loss, accuracy, the confusion matrix and the highest-loss photos (wrong ones counted)', async () => {
    const firstModel = await activeModel();
    const i = fake.slashCommand('score', { user: alice });
    const final = await waitEdit(i.token, (r) => / — (done|failed)$/.test(title(r)), 'the end of the scoring');
    const embed = final.body.embeds[0];
    expect(embed.title).toMatch(/^📝 Score #\d+ — done$/);
    expect(embed.fields.find((f: any) => f.name === 'Photos').value).toBe('10');
    expect(embed.fields.find((f: any) => f.name === 'Model').value).toBe(`\`${firstModel}\``);
    expect(embed.fields.find((f: any) => f.name === 'Against the labels').value).toMatch(/log loss \*\*\d\.\d{4}\*\* · accuracy \*\*\d+\.\d{2}%\*\*/);
    expect(embed.fields.find((f: any) => f.name === 'Confusion matrix').value).toMatch(/predicted cat {2}predicted dog\ntrue cat +\d+ +\d+\ntrue dog +\d+ +\d+/);
    expect(embed.image.url).toBe('attachment://highest-loss.png');
    expect(embed.description).toMatch(/the 10 highest-loss photos, \d+ of them answered wrong/);
    expect(final.files.map((f) => f.name)).toEqual(['submission.csv', 'highest-loss.png']);
    const csv = final.files[0]!.bytes.toString('utf8').trim().split('\n');
    expect(csv[0]).toBe('id,label');
    expect(csv.slice(1).map((l) => Number(l.split(',')[0]))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    for (const l of csv.slice(1)) expect(Number(l.split(',')[1])).toBeGreaterThanOrEqual(0);
  });

  it('/model show, list and rollback (the live head goes back too); /jobs tells who ran what and how it ended', async () => {
    const firstModel = await activeModel();
    const modelsBefore = (await registry.listModels()).length;
    const { i, final } = await retrainToTheEnd();
    const second = modelIdOf(final);
    const { i: press } = await pressAndWait(i, buttonIds(final)[0]!);
    await waitEdit(press.token, () => true, 'the promoted message');
    expect(registry.readActiveState().active).toBe(second);

    const show = fake.slashCommand('model', { user: alice, options: [{ name: 'show', type: 1, options: [] }] });
    const shown = (await fake.originalEdit(show)).body.embeds[0];
    expect(shown.title).toBe(`🧠 Active model \`${second}\``);
    expect(shown.description).toMatch(/Validation: log loss \*\*\d\.\d{4}\*\*/);
    expect(shown.description).toContain('Backbones: ResNet50');
    expect(shown.description).toContain(`Rollback would go back to \`${firstModel}\`.`);

    const list = fake.slashCommand('model', { user: alice, options: [{ name: 'list', type: 1, options: [] }] });
    const listed = (await fake.originalEdit(list)).body.embeds[0];
    expect(listed.title).toBe(`🧠 Models (${modelsBefore + 1})`);
    expect(listed.description).toContain(`▶️ **\`${second}\` (active)**`);
    expect(listed.description).toContain(`· \`${firstModel}\``);

    const rb = fake.slashCommand('model', { user: alice, options: [{ name: 'rollback', type: 1, options: [] }] });
    const rolled = (await fake.originalEdit(rb)).body.embeds[0];
    expect(rolled.description).toMatch(new RegExp(`^\`${firstModel}\` is the active model again \\(instead of \`${second}\`\\)`));
    expect(registry.readActiveState().active).toBe(firstModel);
    expect(headId(((app!.services.classifier as QueuedClassifier).classifier as Classifier).activeHead!)).toBe(firstModel);
    await expect.poll(() => logs.some((l) => l.includes(`rolled back from ${second} to ${firstModel}`))).toBe(true);

    const jobs = fake.slashCommand('jobs', { user: alice });
    const listedJobs = (await fake.originalEdit(jobs)).body.embeds[0];
    expect(listedJobs.fields[0]).toEqual({ name: 'Running now', value: 'nothing' });
    const lines = listedJobs.fields[1].value.split('\n');
    expect(lines[0]).toMatch(new RegExp(`^#\\d+ retrain by alice — ✅ succeeded after .* → model \`${second}\` \\(val log loss \\d\\.\\d{4}\\), promoted by alice`));
    expect(lines[1]).toMatch(/^#\d+ score by alice — ✅ succeeded after .* → 10 photos, log loss \d\.\d{4}, accuracy/);
    expect(lines[2]).toMatch(/retrain by alice — ✅ succeeded .*, discarded by carol/);
    expect(lines.at(-1)).toMatch(/retrain by alice — 🛑 cancelled after .* by alice/);
  });

  it('restart in the middle of a job: killed with SIGKILL, the job shows as interrupted, Resume completes it; the active model is untouched', async () => {
    await app!.shutdown('restart test');
    app = null;
    const activeBefore = registry.readActiveState();
    const dataDir = join(root, 'data-restart'); // an empty feature cache: the job has work to do
    const child = runTs('test/integration/admin-child.ts', [], { ...env(dataDir), CATDOG_TEST_PROGRESS_MS: '300' }, root, { lineTimeoutMs: 30_000 });
    try {
      await child.line(/catdog is ready/, 60_000);
      const i = fake.slashCommand('retrain', { user: alice });
      await waitEdit(i.token, (r) => /`[█░]{20}` \d+% · (8|9|[1-3]\d)\/40 photos/.test(r.body.embeds?.[0]?.description ?? ''), 'progress mid-extraction', 60_000);
      child.proc.kill('SIGKILL');
      await child.exit;
    } finally {
      if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
    }
    expect(registry.readActiveState()).toEqual(activeBefore);

    app = await startApp(dataDir);
    expect(logs.some((l) => /admin: 1 job\(s\) interrupted by the last stop/.test(l))).toBe(true);
    const jobs = fake.slashCommand('jobs', { user: alice });
    const listed = await fake.originalEdit(jobs);
    const line = listed.body.embeds[0].fields[1].value as string;
    expect(line).toMatch(/^#1 retrain by alice — ⚠️ interrupted after .*: The process stopped while this job ran\./);
    expect(buttonIds(listed)).toEqual(['job-resume:1']);
    // Its last saved progress (saved every 2 s and on each stage change: it may lag the message).
    expect((await app.services.admin!.jobs.get('1'))!.progress!.stage).toMatch(/^(open|extract)$/);

    const press = fake.pressButton(fake.originalId(jobs)!, 'job-resume:1', { user: alice });
    expect((await immediateReply(press)).type).toBe(5); // a new message follows the resumed job
    const final = await waitEdit(press.token, (r) => / — (done|failed)$/.test(title(r)), 'the end of the resumed job');
    expect(title(final)).toBe('🛠️ Retrain #1 — done');
    const record = await app.services.admin!.jobs.get('1');
    expect(record).toMatchObject({ status: 'succeeded', attempts: 2, startedBy: { name: 'alice' } });
    // The resumed run found the photos done before the kill in the cache.
    const resumedProgress = editsOf(press.token).map((r) => r.body.embeds[0].description as string).find((d) => /from the cache/.test(d));
    expect(resumedProgress).toMatch(/\((\d+) from the cache\)/);
    // Training added a model but changed nothing that is active.
    expect(registry.readActiveState()).toEqual(activeBefore);
  });
});
