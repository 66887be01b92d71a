/**
 * What the bot says: prediction embeds, errors in words (src/error-words.ts, with the running job for job_busy).
 */
import type { APIEmbed } from 'discord.js';
import type { Config } from '../config.ts';
import { describeError as describeErrorWords, ERROR_WORDS } from '../error-words.ts';
import type { ModelView } from '../jobs/models.ts';
import { JobBusy } from '../jobs/runner.ts';
import type { JobRecord, JobStatus, RetrainSummary, ScoreSummary } from '../jobs/types.ts';
import { BACKBONES } from '../model/backbones/index.ts';
import type { BackboneName, Prediction } from '../model/types.ts';
import { formatConfusion } from '../train/metrics.ts';

const COLOURS = { dog: 0xe67e22, cat: 0x9b59b6, neither: 0x95a5a6, error: 0xe74c3c } as const;

export const VERDICT_EMOJI = { dog: '🐶', cat: '🐱', neither: '🤷' } as const;

/** A 10-cell bar for a probability in [0, 1]. */
export function probabilityBar(p: number, cells = 10): string {
  const filled = Math.max(0, Math.min(cells, Math.round(p * cells)));
  return '█'.repeat(filled) + '░'.repeat(cells - filled);
}

export function percent(p: number): string {
  return `${Math.round(p * 100)}%`;
}

export function backboneList(backbones: readonly BackboneName[]): string {
  return backbones.map((b) => (Object.hasOwn(BACKBONES, b) ? BACKBONES[b].title : b)).join(' + ') || 'none';
}

export function seconds(ms: number): string {
  return ms < 1000 ? `${(ms / 1000).toFixed(2)} s` : `${(ms / 1000).toFixed(1)} s`;
}

/** The answer to one photo: verdict, dog probability with a bar, backbones, time taken. */
export function predictionEmbed(p: Prediction, options: { name?: string; elapsedMs?: number } = {}): APIEmbed {
  const title =
    p.label === 'dog' ? `${VERDICT_EMOJI.dog} Dog` : p.label === 'cat' ? `${VERDICT_EMOJI.cat} Cat` : `${VERDICT_EMOJI.neither} Neither a cat nor a dog`;
  const lines = [`Dog probability: **${percent(p.dog)}**`, `\`${probabilityBar(p.dog)}\``];
  if (p.label === 'neither') {
    const top = p.imagenetTop[0];
    lines.unshift(`This photo does not seem to show a cat or a dog${top ? ` (it looks more like: ${top.label})` : ''}.`);
  }
  return {
    title: options.name ? `${title} · ${truncate(options.name, 60)}` : title,
    description: lines.join('\n'),
    color: COLOURS[p.label],
    fields: [
      { name: 'Backbones', value: backboneList(p.backbones), inline: true },
      { name: 'Time', value: seconds(options.elapsedMs ?? p.timings.totalMs), inline: true },
    ],
    footer: { text: `model: ${truncate(p.model, 100)}` },
  };
}

/** An embed for one photo that could not be classified (in a multi-photo answer). */
export function errorEmbed(name: string, err: unknown): APIEmbed {
  return { title: `⚠️ ${truncate(name, 80)}`, description: describeError(err), color: COLOURS.error };
}

/** Any error, in words for the person who asked: the shared words, and which job is running for job_busy. */
export function describeError(err: unknown): string {
  return describeErrorWords(err, {
    job_busy: (e) =>
      e instanceof JobBusy && e.running
        ? `⏳ One job at a time, and this one is running: ${jobLine(e.running)}. Wait for it, or cancel it (its Cancel button, or see \`/jobs\`).`
        : ERROR_WORDS.job_busy(),
  });
}

export function cooldownWords(retryAfterMs: number): string {
  const s = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return `⏳ Easy there! You can ask me again in ${s} s.`;
}

function truncate(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`;
}

// ---------------------------------------------------------------------------- admin operations

const JOB_COLOURS = { running: 0x3498db, succeeded: 0x2ecc71, failed: 0xe74c3c, cancelled: 0x95a5a6, interrupted: 0xf1c40f } as const;

export function adminRefusalWords(admins: Config['admins']): string {
  const who =
    admins.userIds.length || admins.roleIds.length
      ? "the people and roles this bot's owner listed as admins"
      : 'members with the **Administrator** permission';
  return `🔒 Only the bot's admins can do that (${who}). Your attempt has been logged.`;
}

/** "3 min 5 s", "45 s", "1 h 2 min". */
export function duration(sec: number): string {
  const s = Math.max(0, Math.round(sec));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ''}`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)} h${m % 60 ? ` ${m % 60} min` : ''}`;
}

export function ago(iso: string, now = Date.now()): string {
  return `${duration((now - Date.parse(iso)) / 1000)} ago`;
}

/** A bar for a fraction in [0, 1], 20 cells by default. */
export function progressBar(fraction: number, cells = 20): string {
  return probabilityBar(Number.isFinite(fraction) ? fraction : 0, cells);
}

const KIND_TITLES = { retrain: '🛠️ Retrain', score: '📝 Score' } as const;
const STATUS_WORDS: Record<JobStatus, string> = {
  queued: '⏳ queued',
  running: '⏳ running',
  succeeded: '✅ succeeded',
  failed: '❌ failed',
  cancelled: '🛑 cancelled',
  interrupted: '⚠️ interrupted',
};
const STAGE_WORDS: Record<string, string> = {
  open: 'opening the data',
  extract: 'features',
  clean: 'cleaning',
  fit: 'training the head',
  evaluate: 'evaluating',
  save: 'saving',
};
const RETRAIN_STAGES = ['open', 'extract', 'clean', 'fit', 'evaluate', 'save'];

export function jobTitle(r: JobRecord): string {
  return `${KIND_TITLES[r.kind]} #${r.id}`;
}

/** One line about a job: "#3 retrain by alice — ⏳ running (features 800/2000), started 2 min ago". */
export function jobLine(r: JobRecord, now = Date.now()): string {
  const head = `#${r.id} ${r.kind} by ${r.startedBy.name}`;
  if (r.status === 'running' || r.status === 'queued') {
    const p = r.progress;
    const where = p ? ` (${STAGE_WORDS[p.stage] ?? p.stage}${p.done !== null && p.total ? ` ${p.done}/${p.total}` : ''})` : '';
    return `${head} — ${STATUS_WORDS[r.status]}${where}, started ${ago(r.startedAt ?? r.createdAt, now)}`;
  }
  const took = r.startedAt && r.endedAt ? ` after ${duration((Date.parse(r.endedAt) - Date.parse(r.startedAt)) / 1000)}` : '';
  let tail = '';
  if (r.status === 'succeeded' && r.result?.kind === 'retrain') {
    tail = ` → model \`${r.result.modelId}\` (val log loss ${r.result.valLoss.toFixed(4)})${r.decision ? `, ${r.decision.action} by ${r.decision.by.name}` : ', not promoted'}`;
  } else if (r.status === 'succeeded' && r.result?.kind === 'score') {
    tail = ` → ${r.result.n} photos${r.result.logloss !== null ? `, log loss ${r.result.logloss.toFixed(4)}, accuracy ${pct2(r.result.accuracy!)}` : ''}`;
  } else if (r.status === 'cancelled') {
    tail = r.cancelledBy ? ` by ${r.cancelledBy.name}` : '';
  } else if (r.status === 'failed' || r.status === 'interrupted') {
    tail = r.error ? `: ${truncate(r.error, 120)}` : '';
  }
  return `${head} — ${STATUS_WORDS[r.status]}${took}${tail} (${ago(r.endedAt ?? r.createdAt, now)})`;
}

function pct2(x: number): string {
  return `${(x * 100).toFixed(2)}%`;
}

/** The live progress message of a running job. */
export function jobProgressEmbed(r: JobRecord, now = Date.now()): APIEmbed {
  const p = r.progress;
  const lines: string[] = [];
  if (p) {
    lines.push(`**Stage:** ${STAGE_WORDS[p.stage] ?? p.stage} — ${truncate(p.message, 200)}`);
    if (p.done !== null && p.total) {
      const f = p.done / p.total;
      lines.push(`\`${progressBar(f)}\` ${Math.floor(f * 100)}% · ${p.done}/${p.total} photos${p.cached ? ` (${p.cached} from the cache)` : ''}`);
      const speed = p.imgPerSec && p.imgPerSec > 0 ? `⚡ ${p.imgPerSec.toFixed(1)} images/s` : '⚡ — images/s';
      const eta = p.done >= p.total ? 'done' : p.etaSec !== null && p.etaSec > 0 ? `ETA ${duration(p.etaSec)}` : 'ETA —';
      lines.push(`${speed} · ${eta}`);
    }
    if (r.kind === 'retrain') {
      const at = RETRAIN_STAGES.indexOf(p.stage);
      lines.push(RETRAIN_STAGES.map((s, i) => `${i < at ? '✅' : i === at ? '⏳' : '▫️'} ${STAGE_WORDS[s]}`).join('  '));
    }
  } else {
    lines.push('Starting…');
  }
  return {
    title: `${jobTitle(r)} — running`,
    description: lines.join('\n'),
    color: JOB_COLOURS.running,
    footer: { text: `started by ${r.startedBy.name} ${ago(r.startedAt ?? r.createdAt, now)}${r.attempts > 1 ? ` · attempt ${r.attempts} (resumed)` : ''}` },
  };
}

/** A job that ended without a result: cancelled, failed or interrupted. */
export function jobEndedEmbed(r: JobRecord): APIEmbed {
  const took = r.startedAt && r.endedAt ? duration((Date.parse(r.endedAt) - Date.parse(r.startedAt)) / 1000) : '?';
  const untouched = r.kind === 'retrain' ? ' The active model is unchanged.' : '';
  const description =
    r.status === 'cancelled'
      ? `🛑 Cancelled by ${r.cancelledBy?.name ?? 'an admin'} after ${took}.${untouched} Features computed so far are kept in the cache.`
      : r.status === 'interrupted'
        ? `⚠️ Interrupted after ${took}: ${r.error ?? 'the bot stopped.'}${untouched} Resume it from \`/jobs\`; it picks up where it stopped.`
        : `❌ Failed after ${took}: ${r.error ?? 'unknown error'}${untouched}`;
  return { title: `${jobTitle(r)} — ${r.status}`, description, color: JOB_COLOURS[r.status as keyof typeof JOB_COLOURS] ?? JOB_COLOURS.failed };
}

function metricLine(loss: number | null, acc: number | null): string {
  return `log loss **${loss === null ? '—' : loss.toFixed(4)}** · accuracy **${acc === null ? '—' : pct2(acc)}**`;
}

/** The end of a retrain: the new model against the active one, the curves, and what to do next. */
export function retrainResultEmbed(r: JobRecord, s: RetrainSummary, curvesName: string | null): APIEmbed {
  const fields: NonNullable<APIEmbed['fields']> = [
    {
      name: `New model \`${s.modelId}\` (validation)`,
      value: `${metricLine(s.valLoss, s.valAcc)}\n${s.recipe}${s.flip ? ' + flip averaging' : ''}, ${s.trainCount} training / ${s.valCount} validation photos`,
    },
  ];
  if (s.active) {
    fields.push({ name: `Active model \`${s.active.id}\``, value: `${metricLine(s.active.valLoss, s.active.valAcc)}\n(as recorded when it was trained)` });
    if (s.active.valLoss !== null) {
      const d = s.valLoss - s.active.valLoss;
      fields.push({
        name: 'Comparison',
        value: `${d < 0 ? '🟢 lower' : d > 0 ? '🔴 higher' : '⚪ the same'} validation log loss (${d >= 0 ? '+' : '−'}${Math.abs(d).toFixed(4)})`,
      });
    }
  } else {
    fields.push({ name: 'Active model', value: 'none yet: promoting makes this the first.' });
  }
  const sources = Object.entries(s.valBySource);
  if (sources.length > 1) {
    fields.push({ name: 'Validation by source', value: sources.map(([src, v]) => `${src}: ${v.n} photos, log loss ${v.logloss.toFixed(4)}, accuracy ${pct2(v.accuracy)}`).join('\n') });
  }
  fields.push({ name: 'Data', value: `${s.outliers} outlier(s) flagged and left out · ${s.unreadable} unreadable photo(s)` });
  return {
    title: `${jobTitle(r)} — done`,
    description: `Not active yet. **Promote** makes it answer for everyone at once (no restart); **Discard** deletes it.`,
    color: JOB_COLOURS.succeeded,
    fields,
    ...(curvesName ? { image: { url: `attachment://${curvesName}` } } : {}),
    footer: { text: `started by ${r.startedBy.name}${r.startedAt && r.endedAt ? ` · took ${duration((Date.parse(r.endedAt) - Date.parse(r.startedAt)) / 1000)}` : ''}` },
  };
}

/** The end of a scoring run. */
export function scoreResultEmbed(r: JobRecord, s: ScoreSummary, worstName: string | null): APIEmbed {
  const fields: NonNullable<APIEmbed['fields']> = [
    { name: 'Photos', value: `${s.n}${s.unreadable ? ` (${s.unreadable} unreadable, given 0.5)` : ''}`, inline: true },
    { name: 'Model', value: `\`${s.model}\``, inline: true },
    { name: 'Speed', value: `${s.msPerImage.toFixed(1)} ms/photo`, inline: true },
  ];
  if (s.logloss !== null && s.accuracy !== null) {
    fields.push({ name: 'Against the labels', value: metricLine(s.logloss, s.accuracy) });
    if (s.confusion) fields.push({ name: 'Confusion matrix', value: `\`\`\`\n${formatConfusion(s.confusion)}\n\`\`\`` });
  }
  return {
    title: `${jobTitle(r)} — done`,
    description: `\`submission.csv\` is attached (Kaggle's format: id,label = P(dog)).${worstName ? ' The worst errors are below.' : ''}`,
    color: JOB_COLOURS.succeeded,
    fields,
    ...(worstName ? { image: { url: `attachment://${worstName}` } } : {}),
    footer: { text: `started by ${r.startedBy.name}` },
  };
}

/** `/jobs`: the job running now and the last ones. */
export function jobsEmbed(current: JobRecord | null, recent: JobRecord[], now = Date.now()): APIEmbed {
  const past = recent.filter((r) => r.id !== current?.id);
  return {
    title: '🧰 Jobs',
    color: current ? JOB_COLOURS.running : JOB_COLOURS.cancelled,
    fields: [
      { name: 'Running now', value: current ? jobLine(current, now) : 'nothing' },
      { name: 'Recent', value: past.length ? truncate(past.map((r) => jobLine(r, now)).join('\n'), 1024) : 'no jobs yet' },
    ],
  };
}

function modelLines(v: ModelView): string[] {
  const lines = [
    `Validation: ${metricLine(v.valLoss, v.valAcc)}`,
    `Trained ${v.date ? v.date.slice(0, 16).replace('T', ' ') + ' UTC' : 'at an unknown date'} · ${v.recipe ?? 'unknown recipe'}${v.tta === 'flip' ? ' + flip averaging' : ''}`,
    `Backbones: ${backboneList(v.backbones as BackboneName[])}`,
  ];
  if (v.sources.length) lines.push(`Data: ${v.sources.join(' + ')}${v.photos !== null ? ` (${v.photos} photos${v.outliersExcluded ? `, ${v.outliersExcluded} outliers left out` : ''})` : ''}`);
  for (const [src, m] of Object.entries(v.valBySource)) lines.push(`· ${src}: log loss ${m.logloss.toFixed(4)}, accuracy ${pct2(m.accuracy)} (${m.n} photos)`);
  return lines;
}

/** `/model show`. */
export function modelEmbed(active: ModelView | null, live: string | null, previous: string | null): APIEmbed {
  if (!active) {
    return { title: '🧠 No active model', description: `The registry has no active model${live ? ` (the bot answers with \`${live}\`, loaded from elsewhere)` : ''}. Run \`/retrain\` and promote the result.`, color: JOB_COLOURS.cancelled };
  }
  const lines = modelLines(active);
  if (live !== active.id) lines.push(`⚠️ The bot answers with \`${live ?? 'no head'}\`, not the registry's active model (CATDOG_HEAD?).`);
  lines.push(previous ? `Rollback would go back to \`${previous}\`.` : 'No earlier model to roll back to.');
  return { title: `🧠 Active model \`${active.id}\``, description: lines.join('\n'), color: JOB_COLOURS.succeeded };
}

/** `/model list`. */
export function modelListEmbed(models: ModelView[]): APIEmbed {
  if (!models.length) return { title: '🧠 Models', description: 'No models stored yet. Run `/retrain`.' };
  const shown = models.slice(0, 15);
  return {
    title: `🧠 Models (${models.length})`,
    description: truncate(
      shown.map((v) => `${v.active ? '▶️ **' : '· '}\`${v.id}\`${v.active ? ' (active)**' : ''} — val log loss ${v.valLoss === null ? '—' : v.valLoss.toFixed(4)}, accuracy ${v.valAcc === null ? '—' : pct2(v.valAcc)} · ${v.recipe ?? '?'}${v.tta === 'flip' ? '+flip' : ''} · ${v.sources.join(' + ') || '?'}`).join('\n') +
        (models.length > shown.length ? `\n… and ${models.length - shown.length} older` : ''),
      4000,
    ),
  };
}
