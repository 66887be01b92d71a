/**
 * Progress for long CLI work: a bar redrawn in place on a terminal, plain lines (at most one per
 * 5 seconds, plus the last) elsewhere, e.g. in CI logs.
 */
import type { ExtractProgress } from '../train/features.ts';

export function formatEta(sec: number): string {
  if (!Number.isFinite(sec) || sec <= 0) return '--';
  const m = Math.floor(sec / 60);
  const s = Math.round(sec % 60);
  return m ? `${m}m${String(s).padStart(2, '0')}s` : `${s}s`;
}

export function bar(fraction: number, width = 24): string {
  const f = Math.max(0, Math.min(1, fraction));
  const full = Math.round(f * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

export function extractLine(label: string, p: ExtractProgress): string {
  const pct = p.total ? (100 * p.done) / p.total : 100;
  return `${label} ${bar(p.done / Math.max(1, p.total))} ${p.done}/${p.total} (${pct.toFixed(0)}%) ${p.imgPerSec.toFixed(1)} img/s ETA ${formatEta(p.etaSec)} · cached ${p.cached} · failed ${p.failed}`;
}

/** Draws progress on `stream`: redrawn in place on a terminal (not under CI), else a plain line every `intervalMs` and the last. */
export function progressPrinter(
  stream: NodeJS.WriteStream = process.stderr,
  o: { intervalMs?: number; ci?: boolean } = {},
): { update(line: string, final?: boolean): void; done(): void } {
  const intervalMs = o.intervalMs ?? 5000;
  const tty = Boolean(stream.isTTY) && !o.ci;
  let last = 0;
  let drawn = false;
  return {
    update(line, final = false) {
      const now = Date.now();
      if (tty) {
        stream.write(`\r\x1b[K${line}`);
        drawn = true;
        if (final) stream.write('\n'), (drawn = false);
      } else if (final || now - last >= intervalMs) {
        stream.write(`${line}\n`);
        last = now;
      }
    },
    done() {
      if (drawn) stream.write('\n');
      drawn = false;
    },
  };
}
