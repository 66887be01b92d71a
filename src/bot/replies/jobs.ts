/** How a job shows: its one-line summary, the live progress, its end and result, and `/jobs`. */
import type { APIEmbed } from 'discord.js';
import type { JobRecord, JobStatus, RetrainSummary, ScoreSummary } from '../../jobs/types.ts';
import { formatConfusion } from '../../train/metrics.ts';
import { ago, duration, JOB_COLOURS, metricLine, pct2, progressBar, truncate } from './format.ts';

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
/** What the contact sheet under a score shows: the highest-loss photos, errors only when answered wrong. */
export function highestLossLine(s: Pick<ScoreSummary, 'worstShown' | 'worstWrong'>): string {
  if (s.worstShown === undefined || s.worstWrong === undefined) return 'The highest-loss photos are below.';
  const right = s.worstShown - s.worstWrong;
  return `Below: the ${s.worstShown} highest-loss photos, ${s.worstWrong} of them answered wrong${right ? ` (marked WRONG; the other ${right} were answered right, just least surely)` : ''}.`;
}

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
    description: `\`submission.csv\` is attached (Kaggle's format: id,label = P(dog)).${worstName ? ` ${highestLossLine(s)}` : ''}`,
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
