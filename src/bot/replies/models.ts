/** `/model show` and `/model list`. */
import type { APIEmbed } from 'discord.js';
import type { ModelView } from '../../jobs/models.ts';
import type { BackboneName } from '../../model/types.ts';
import { backboneList, JOB_COLOURS, metricLine, pct2, truncate } from './format.ts';

function modelLines(v: ModelView): string[] {
  const lines = [
    `Validation: ${metricLine(v.valLoss, v.valAcc)}`,
    `Trained ${v.date ? v.date.slice(0, 16).replace('T', ' ') + ' UTC' : 'at an unknown date'} · ${v.recipe ?? 'unknown recipe'}${v.tta === 'flip' ? ' + flip averaging' : ''}`,
    `Backbones: ${backboneList(v.backbones as BackboneName[])} (${v.precision} features)`,
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
