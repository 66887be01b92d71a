/**
 * Study: pooling ResNet50's last feature map other ways than the global average, on maps cached by
 * scripts/maps-probe.ts (the same photos at one or more views). For each pooling, the pooled
 * features of the views are averaged per photo (as a head answers), an L2 logistic regression is
 * fitted 5-fold (the strength picked by out-of-fold log loss from 0.03, 0.01, 0.003), and its
 * out-of-fold predictions are compared paired with the global average's.
 *
 *   npx tsx scripts/pool-probe.ts /work/maps/p288 [/work/maps/p224 ...] [--poolings avg,gem2,gem3,gem4,max,avg+max]
 *
 * Poolings: avg (what the shipped graph does), max, gemP (generalized mean, (mean x^P)^(1/P)), and
 * "a+b" for two poolings concatenated (4096 features per view).
 */
import { readFileSync } from 'node:fs';
import { viewName } from '../src/model/views.ts';
import { assignFolds, formatPaired, metricsOf, oofLinear, pairedCompare, probsOf } from '../src/train/cv.ts';

const args = process.argv.slice(2);
const at = args.indexOf('--poolings');
const poolings = (at >= 0 ? args.splice(at, 2)[1]! : 'avg,gem2,gem3,gem4,max,avg+max').split(',');
if (!args.length) throw new Error('give the maps to read: scripts/maps-probe.ts --out <base> writes <base>.bin and <base>.json');

interface Maps {
  side: number;
  channels: number;
  scale: number;
  size: number;
  flip: boolean;
  items: { hash: string; label: number }[];
  buf: Buffer;
}
const views: Maps[] = args.map((b) => ({ ...JSON.parse(readFileSync(`${b}.json`, 'utf8')), buf: readFileSync(`${b}.bin`) }));
const first = views[0]!;
const N = first.items.length;
const C = first.channels;
for (const v of views) {
  if (v.items.length !== N || v.items.some((it, i) => it.hash !== first.items[i]!.hash))
    throw new Error('the maps must hold the same photos in the same order');
  if (v.buf.length !== N * v.side * v.side * C) throw new Error(`a map file holds ${v.buf.length} bytes, expected ${N * v.side * v.side * C}`);
}
const y = Uint8Array.from(first.items, (i) => i.label);
const folds = assignFolds(
  first.items.map((i) => i.hash),
  y,
  5,
);

/** One pooling of every photo, mean over the views: N x C. */
function pooled(kind: string): Float32Array {
  const x = new Float32Array(N * C);
  const e = kind.startsWith('gem') ? Number(kind.slice(3)) : 0;
  if (kind !== 'avg' && kind !== 'max' && !(e > 0)) throw new Error(`unknown pooling ${kind}`);
  for (const v of views) {
    const P = v.side * v.side;
    for (let i = 0; i < N; i++) {
      const m = v.buf.subarray(i * P * C, (i + 1) * P * C); // [C][P] uint8 codes
      for (let c = 0; c < C; c++) {
        const o = c * P;
        let acc = 0;
        if (kind === 'avg') {
          for (let p = 0; p < P; p++) acc += m[o + p]!;
          acc /= P;
        } else if (kind === 'max') {
          for (let p = 0; p < P; p++) acc = Math.max(acc, m[o + p]!);
        } else {
          for (let p = 0; p < P; p++) acc += m[o + p]! ** e;
          acc = (acc / P) ** (1 / e);
        }
        x[i * C + c] += (acc * v.scale) / views.length;
      }
    }
  }
  return x;
}

function features(name: string): { x: Float32Array; d: number } {
  const parts = name.split('+').map(pooled);
  const d = parts.length * C;
  const x = new Float32Array(N * d);
  for (let i = 0; i < N; i++) parts.forEach((p, k) => x.set(p.subarray(i * C, (i + 1) * C), i * d + k * C));
  return { x, d };
}

function oof(name: string): Float64Array {
  const { x, d } = features(name);
  const l2 = [0.03, 0.01, 0.003];
  // One "view" holding the pooled features (already averaged over the maps' views).
  const data = { views: [{ size: first.size, flip: false }], x: [x], y, n: N, d, groups: first.items.map((i) => i.hash) };
  const { logits } = oofLinear(data, folds, { answerViews: [0], train: 'mean', l2 });
  const scored = logits.map((z, k) => ({ l2: l2[k]!, p: probsOf(z) })).map((r) => ({ ...r, m: metricsOf(y, r.p) }));
  const best = scored.reduce((a, b) => (b.m.logloss < a.m.logloss ? b : a));
  console.log(`${name.padEnd(10)} l2 ${best.l2}  OOF log loss ${best.m.logloss.toFixed(4)}  accuracy ${(100 * best.m.accuracy).toFixed(2)}%`);
  return best.p;
}

console.log(`${N} photos, views ${views.map((v) => viewName(v)).join(' + ')}, 5-fold OOF`);
const base = oof('avg');
for (const k of poolings.filter((p) => p !== 'avg')) console.log(`  ${k} vs avg, paired: ${formatPaired(pairedCompare(y, base, oof(k)))}`);
