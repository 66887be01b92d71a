import { appendFileSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cvOptions } from '../../src/cli/pipeline.ts';
import { Head, HEAD_FORMAT, type HeadFile } from '../../src/model/head.ts';
import { CAT_CLASSES, DOG_CLASSES, imagenetDogLogit } from '../../src/model/imagenet.ts';
import { catDogMass, centroidSimilarity, isNeither, validNeither } from '../../src/model/neither.ts';
import { legacyViews, parseView, parseViews, viewCode, viewFromCode, viewName } from '../../src/model/views.ts';
import { rng } from '../../src/model/weights/generate.ts';
import {
  assignFolds,
  applyStack,
  bestClip,
  crossFitCalibration,
  crossFitStack,
  fitCalibration,
  fitStack,
  metricsOf,
  oofLinear,
  pairedCompare,
  probsOf,
  sigmoid,
  type ViewData,
} from '../../src/train/cv.ts';
import { FeatureCache } from '../../src/train/feature-cache.ts';
import { answeredWrong, worstCaption, worstTitle } from '../../src/train/score.ts';

/** A one-feature ResNet50 head (kernel 1 on feature 0, bias 0.5) with `over` on top. */
const base = (over: Partial<HeadFile>): HeadFile => ({
  format: HEAD_FORMAT,
  backbones: ['resnet50'],
  featureSize: 2048,
  kernel: Array.from({ length: 2048 }, (_, i) => (i === 0 ? 1 : 0)),
  bias: 0.5,
  ...over,
});

describe('views', () => {
  it('names, parses and codes views; 224 keeps the original cache codes 0 and 1', () => {
    expect(parseViews('224,224f,288,288f').map(viewName)).toEqual(['224', '224f', '288', '288f']);
    expect(viewCode(parseView('224'))).toBe(0);
    expect(viewCode(parseView('224f'))).toBe(1);
    expect(viewCode(parseView('288'))).toBe(36);
    expect(viewCode(parseView('320f'))).toBe(41);
    for (const s of ['224', '224f', '256', '288f', '320', '448f']) expect(viewName(viewFromCode(viewCode(parseView(s))))).toBe(s);
    expect(legacyViews(true).map(viewName)).toEqual(['224', '224f']);
    expect(() => parseView('300')).toThrow(/multiple of 16/);
    expect(() => parseView('big')).toThrow(/not a view/);
    expect(() => parseViews('224,224')).toThrow(/repeat/);
  });
});

describe('feature cache, read-only', () => {
  it('reads what another process is still writing without cutting its last record', () => {
    const dir = mkdtempSync(join(tmpdir(), 'catdog-ro-'));
    const w = FeatureCache.open(dir, 'resnet50', 'abcdef0123456789', 2048);
    w.put('ab'.repeat(32), 36, new Float32Array(2048).fill(2));
    appendFileSync(w.path, Buffer.alloc(100, 1)); // a record being written
    const r = FeatureCache.open(dir, 'resnet50', 'abcdef0123456789', 2048, { readOnly: true });
    expect(r.size).toBe(1);
    expect(r.get('ab'.repeat(32), 36)![0]).toBe(2);
    expect(statSync(w.path).size).toBe(33 + 2048 * 4 + 100);
    expect(() => r.put('cd'.repeat(32), 0, new Float32Array(2048))).toThrow(/read-only/);
    r.close();
    w.close();
  });
});

describe('folds', () => {
  it('keeps a group in one fold, balances sizes and classes, and is deterministic', () => {
    const groups: string[] = [];
    const labels: number[] = [];
    for (let i = 0; i < 300; i++) {
      const copies = i % 10 === 0 ? 3 : 1; // some photos appear three times (identical copies)
      for (let c = 0; c < copies; c++) {
        groups.push(`g${i}`);
        labels.push(i % 3 === 0 ? 1 : 0);
      }
    }
    const f = assignFolds(groups, labels, 5, 7);
    const foldOf = new Map<string, number>();
    groups.forEach((g, i) => {
      if (foldOf.has(g)) expect(f[i]).toBe(foldOf.get(g));
      foldOf.set(g, f[i]!);
    });
    const perFold = [0, 1, 2, 3, 4].map((k) => [...foldOf.values()].filter((x) => x === k).length);
    expect(Math.max(...perFold) - Math.min(...perFold)).toBeLessThanOrEqual(1);
    const dogsPerFold = [0, 1, 2, 3, 4].map((k) => [...foldOf].filter(([g, x]) => x === k && Number(g.slice(1)) % 3 === 0).length);
    expect(Math.max(...dogsPerFold) - Math.min(...dogsPerFold)).toBeLessThanOrEqual(1);
    expect(Array.from(assignFolds(groups, labels, 5, 7))).toEqual(Array.from(f));
    expect(Array.from(assignFolds(groups, labels, 5, 8))).not.toEqual(Array.from(f));
    expect(() => assignFolds(['a', 'a'], [0, 0], 2)).toThrow(/cannot fill/);
  });
});

/** Two noisy Gaussian classes in d dimensions, with a mirrored "view" that is the same photo plus noise. */
function synthetic(n: number, d: number, seed: number): ViewData {
  const r = rng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
  const y = new Uint8Array(n);
  const x0 = new Float32Array(n * d);
  const x1 = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    y[i] = r() < 0.5 ? 1 : 0;
    for (let j = 0; j < d; j++) {
      const v = (j < 4 ? (y[i] ? 0.8 : -0.8) : 0) + gauss();
      x0[i * d + j] = v;
      x1[i * d + j] = v + 0.3 * gauss();
    }
  }
  return { views: parseViews('224,224f'), x: [x0, x1], y, n, d, groups: Array.from({ length: n }, (_, i) => `p${i}`) };
}

describe('out-of-fold linear heads', () => {
  it('predicts each photo from folds that never saw it, and beats chance by the expected margin', () => {
    const data = synthetic(600, 16, 3);
    const folds = assignFolds(data.groups, data.y, 5);
    const r = oofLinear(data, folds, { answerViews: [0, 1], train: 'each', l2: [0.1, 0.01] });
    expect(r.logits).toHaveLength(2);
    const m = metricsOf(data.y, probsOf(r.logits[0]!));
    // Four informative dimensions at ±0.8: a linear rule gets about 97.9%; chance is 50%.
    expect(m.accuracy).toBeGreaterThan(0.93);
    expect(m.logloss).toBeLessThan(0.3); // chance: 0.693
    // Out of fold: labels flipped on half the photos cannot be learnt back (in-sample fitting would).
    const noisy: ViewData = { ...data, y: Uint8Array.from(data.y, (v, i) => (i % 2 ? 1 - v : v)) };
    const rn = oofLinear(noisy, folds, { answerViews: [0], train: 'mean', l2: [0.001] });
    expect(metricsOf(noisy.y, probsOf(rn.logits[0]!)).accuracy).toBeLessThan(0.6);
  });

  it('leaves excluded photos out of training but still predicts them', () => {
    const data = synthetic(300, 8, 5);
    const folds = assignFolds(data.groups, data.y, 3);
    // Exclude every dog from training: then every photo is predicted a cat.
    const dogs = new Set([...Array(data.n).keys()].filter((i) => data.y[i] === 1));
    const r = oofLinear(data, folds, { answerViews: [0], train: 'mean', l2: [0.01], exclude: dogs });
    const p = probsOf(r.logits[0]!);
    expect(p.every((v) => v < 0.5)).toBe(true);
    expect(p.length).toBe(data.n);
  });

  it('gives each answer view its own out-of-fold logit, whose mean is the answer (the head is linear)', () => {
    const data = synthetic(300, 8, 7);
    const folds = assignFolds(data.groups, data.y, 3);
    const r = oofLinear(data, folds, { answerViews: [0, 1], train: 'each', l2: [0.1, 0.01] }, { perView: true });
    expect(r.viewLogits).toHaveLength(2);
    for (const [s, zs] of r.viewLogits!.entries()) {
      expect(zs).toHaveLength(2);
      // The views differ (noise per view), so their logits do too, and they average to the answer.
      expect(zs[0]!.some((z, i) => Math.abs(z - zs[1]![i]!) > 1e-3)).toBe(true);
      for (let i = 0; i < data.n; i++) expect((zs[0]![i]! + zs[1]![i]!) / 2).toBeCloseTo(r.logits[s]![i]!, 4);
    }
    expect(oofLinear(data, folds, { answerViews: [0, 1], train: 'each', l2: [0.1] }).viewLogits).toBeUndefined();
  });
});

describe('paired comparison and calibration', () => {
  it('gives the mean per-photo difference with its interval, and the accuracy difference', () => {
    const y = [1, 1, 0, 0];
    const a = [0.9, 0.6, 0.2, 0.7]; // last one wrong
    const b = [0.9, 0.8, 0.2, 0.3]; // all right
    const c = pairedCompare(y, a, b);
    const la = [-Math.log(0.9), -Math.log(0.6), -Math.log(0.8), -Math.log(0.3)];
    const lb = [-Math.log(0.9), -Math.log(0.8), -Math.log(0.8), -Math.log(0.7)];
    const d = lb.map((v, i) => v - la[i]!);
    const mean = d.reduce((s, v) => s + v, 0) / 4;
    const sd = Math.sqrt(d.reduce((s, v) => s + (v - mean) ** 2, 0) / 3);
    expect(c.diff).toBeCloseTo(mean, 10);
    expect(c.se).toBeCloseTo(sd / 2, 10);
    expect(c.hi - c.lo).toBeCloseTo(2 * 1.96 * c.se, 10);
    expect(c.accDiff).toBeCloseTo(0.25, 10);
    // Identical candidates: no difference, zero width.
    const same = pairedCompare(y, a, a);
    expect(same.diff).toBe(0);
    expect(same.hi).toBe(0);
  });

  it('temperature scaling undoes an overconfident logit, and cross-fitting keeps it out of fold', () => {
    const r = rng(11);
    const n = 4000;
    const trueZ = Float64Array.from({ length: n }, () => (r() - 0.5) * 8);
    const y = Float64Array.from(trueZ, (z) => (r() < sigmoid(z) ? 1 : 0));
    const over = Float64Array.from(trueZ, (z) => 3 * z); // three times too sure
    const t = fitCalibration(over, y, 'temperature');
    expect(t.a).toBeGreaterThan(0.25);
    expect(t.a).toBeLessThan(0.42);
    expect(t.b).toBe(0);
    const p = fitCalibration(
      Float64Array.from(over, (z) => z + 2),
      y,
      'platt',
    );
    expect(p.b / p.a).toBeCloseTo(-2, 0);
    const folds = assignFolds(
      Array.from({ length: n }, (_, i) => `${i}`),
      y,
      5,
    );
    const cal = crossFitCalibration(over, y, folds, 'temperature');
    expect(metricsOf(y, probsOf(cal)).logloss).toBeLessThan(metricsOf(y, probsOf(over)).logloss - 0.05);
  });
});

describe('"neither" rules', () => {
  it('sums the cat and dog classes and compares the mean over views with the threshold', () => {
    const probs = new Float32Array(1000).fill(0);
    probs[DOG_CLASSES.first] = 0.004;
    probs[CAT_CLASSES.last] = 0.002;
    probs[500] = 0.994;
    expect(catDogMass(probs)).toBeCloseTo(0.006, 6);
    expect(isNeither({ rule: 'mass', threshold: 0.01 }, [probs])).toBe(true);
    expect(isNeither({ rule: 'mass', threshold: 0.005 }, [probs])).toBe(false);
    // Both cat and dog classes are in the top 10 here, so the old rule says "a cat or dog".
    expect(isNeither({ rule: 'top10' }, [probs])).toBe(false);
    const sure = new Float32Array(1000).fill(0);
    sure[CAT_CLASSES.first] = 1;
    expect(isNeither({ rule: 'mass', threshold: 0.01 }, [probs, sure])).toBe(false); // mean mass 0.503
    expect(isNeither({ rule: 'mass', threshold: 0.01 }, [])).toBe(false);
  });

  it('mass+novelty: low cat/dog mass is "neither" only when the features are also unlike the class centroids', () => {
    const low = new Float32Array(1000).fill(0);
    low[DOG_CLASSES.first] = 0.01; // another animal, or a cat in a basket: a little dog probability
    low[400] = 0.99;
    const cat = Array.from({ length: 2048 }, (_, j) => (j < 1024 ? 1 : 0));
    const dog = Array.from({ length: 2048 }, (_, j) => (j >= 1024 ? 1 : 0));
    const rule = { rule: 'mass+novelty' as const, threshold: 0.05, cosine: 0.5, centroids: [cat, dog] };
    const catLike = Float32Array.from(cat, (v, j) => v + (j % 7 === 0 ? 0.5 : 0));
    const horse = Float32Array.from({ length: 2048 }, (_, j) => (j % 2 === 0 ? 1 : -1)); // orthogonal to both
    expect(centroidSimilarity(catLike, rule.centroids)).toBeGreaterThan(0.9);
    expect(centroidSimilarity(horse, rule.centroids)).toBeCloseTo(0, 6);
    expect(isNeither(rule, [low], catLike)).toBe(false); // the cat in the basket
    expect(isNeither(rule, [low], horse)).toBe(true);
    const sure = new Float32Array(1000).fill(0);
    sure[CAT_CLASSES.first] = 0.9;
    expect(isNeither(rule, [sure], horse)).toBe(false); // enough cat probability: never "neither"
    expect(validNeither(rule)).toBe(true);
    expect(validNeither({ ...rule, centroids: [[1, 2]] })).toBe(false);
  });
});

describe('head with views, calibration and a neither rule', () => {
  it('applies the calibration to the logit and reads views and rule', () => {
    const h = new Head(base({ views: ['224', '224f', '288'], calibration: { kind: 'platt', a: 0.5, b: -0.25 }, neither: { rule: 'mass', threshold: 0.02 } }));
    const x = new Float32Array(2048);
    x[0] = 2;
    expect(h.logit(x)).toBeCloseTo(0.5 * 2.5 - 0.25, 6);
    expect(h.views.map(viewName)).toEqual(['224', '224f', '288']);
    expect(h.neither).toEqual({ rule: 'mass', threshold: 0.02 });
    const old = new Head(base({ tta: 'flip' }));
    expect(old.views.map(viewName)).toEqual(['224', '224f']);
    expect(old.neither).toEqual({ rule: 'top10' });
    expect(old.logit(x)).toBeCloseTo(2.5, 6);
    expect(() => new Head(base({ views: ['225'] }))).toThrow(/views/);
    expect(() => new Head(base({ neither: { rule: 'mass', threshold: 2 } }))).toThrow(/neither/);
  });
});

describe("stacking with ImageNet's cat-vs-dog logit", () => {
  const probs = (dog: number, cat: number) => {
    const p = new Float32Array(1000).fill((1 - dog - cat) / (1000 - 125));
    for (let k = DOG_CLASSES.first; k <= DOG_CLASSES.last; k++) p[k] = dog / 118;
    for (let k = CAT_CLASSES.first; k <= CAT_CLASSES.last; k++) p[k] = cat / 7;
    return p;
  };

  it('is log(dog mass) − log(cat mass), averaged over the views', () => {
    expect(imagenetDogLogit([probs(0.9, 0.05)])).toBeCloseTo(Math.log(0.9 + 1e-6) - Math.log(0.05 + 1e-6), 5);
    const two = imagenetDogLogit([probs(0.9, 0.05), probs(0.2, 0.7)]);
    expect(two).toBeCloseTo((imagenetDogLogit([probs(0.9, 0.05)]) + imagenetDogLogit([probs(0.2, 0.7)])) / 2, 6);
    expect(imagenetDogLogit([])).toBe(0);
  });

  it('a stacked head adds it to its own logit, and refuses to answer without the ImageNet output', () => {
    const h = new Head(base({ stack: { head: 0.8, imagenet: 0.3, bias: -0.1 } }));
    const x = new Float32Array(2048);
    x[0] = 2;
    const views = [probs(0.9, 0.05), probs(0.6, 0.3)];
    expect(h.needsImagenet).toBe(true);
    expect(h.logit(x, views)).toBeCloseTo(0.8 * 2.5 + 0.3 * imagenetDogLogit(views) - 0.1, 5);
    expect(h.predict(x, views)).toBeCloseTo(sigmoid(h.logit(x, views)), 9);
    expect(() => h.logit(x)).toThrow(/ImageNet/);
    expect(() => h.logit(x, [])).toThrow(/ImageNet/);
    expect(new Head(base({})).needsImagenet).toBe(false);
    expect(() => new Head(base({ stack: { head: 1, imagenet: Number.NaN, bias: 0 } }))).toThrow(/stack/);
    expect(() => new Head(base({ stack: { head: 1, imagenet: 1, bias: 0 }, calibration: { kind: 'platt', a: 1, b: 0 } }))).toThrow(/not both/);
  });

  it('fitStack recovers the weights of a logistic model on two columns; cross-fitting predicts each fold from the others', () => {
    const r = rng(7);
    const n = 4000;
    const a = Float64Array.from({ length: n }, () => (r() - 0.5) * 8);
    const b = Float64Array.from({ length: n }, () => (r() - 0.5) * 8);
    const y = Uint8Array.from({ length: n }, (_, i) => (r() < sigmoid(1.5 * a[i]! + 0.5 * b[i]! - 0.3) ? 1 : 0));
    const s = fitStack([a, b], y);
    expect(s.w[0]).toBeCloseTo(1.5, 0);
    expect(s.w[1]).toBeCloseTo(0.5, 0);
    expect(Math.abs(s.b + 0.3)).toBeLessThan(0.25);
    expect(applyStack(s, [a, b], 3)).toBeCloseTo(s.w[0]! * a[3]! + s.w[1]! * b[3]! + s.b, 9);
    const folds = Int32Array.from({ length: n }, (_, i) => i % 4);
    const z = crossFitStack([a, b], y, folds);
    // Both columns carry signal: the stack beats the first column alone out of fold.
    expect(metricsOf(y, probsOf(z)).logloss).toBeLessThan(metricsOf(y, probsOf(crossFitStack([a], y, folds))).logloss);
  });

  it('bestClip picks no clip for calibrated probabilities and a clip when a few are confidently wrong', () => {
    const y = Uint8Array.from({ length: 1000 }, (_, i) => (i % 2 ? 1 : 0));
    const good = Float64Array.from(y, (v) => (v ? 0.9 : 0.1));
    expect(bestClip(y, good)).toBe(0);
    const bad = Float64Array.from(y, (v, i) => (i < 20 ? (v ? 1e-9 : 1 - 1e-9) : v ? 0.9999 : 0.0001));
    expect(bestClip(y, bad)).toBeGreaterThan(0);
  });
});

describe('the highest-loss sheet and the CV flags', () => {
  it('marks the photos answered wrong and counts them in the title', () => {
    const worst = [
      { id: 3, label: 1, dog: 0.2 },
      { id: 9, label: 0, dog: 0.45 },
    ];
    expect(worst.map(answeredWrong)).toEqual([true, false]);
    expect(worstTitle(worst)).toBe('The 2 highest-loss photos: 1 answered wrong, 1 right but least sure');
    expect(worstCaption(worst[0]!)[2]).toBe('WRONG: answered cat');
    expect(worstCaption(worst[1]!)[2]).toBe('right');
  });

  it('parses --folds, --views, --clean, --calibration and --neither', () => {
    const o = cvOptions({
      folds: '5',
      views: '224,224f,288',
      'train-views': '224,224f,288,288f',
      clean: 'mass:0.02',
      calibration: 'temperature',
      neither: 'mass:0.01',
    });
    expect(o.folds).toBe(5);
    expect(o.views!.map(viewName)).toEqual(['224', '224f', '288']);
    expect(o.trainViews!.map(viewName)).toEqual(['224', '224f', '288', '288f']);
    expect(o).toMatchObject({ clean: 'mass', cleanMass: 0.02, calibration: 'temperature', neither: { rule: 'mass', threshold: 0.01 } });
    expect(() => cvOptions({ folds: '1' })).toThrow(/--folds/);
    expect(() => cvOptions({ folds: '5', clean: 'some' })).toThrow(/--clean/);
    expect(() => cvOptions({ folds: '5', neither: 'mass' })).toThrow(/--neither/);
    expect(cvOptions({ folds: '5', stack: 'imagenet' }).stack).toBe('imagenet');
    expect(cvOptions({ folds: '5', pooling: 'avg+max' }).pooling).toBe('avg+max');
    expect(cvOptions({ folds: '5' }).pooling).toBeUndefined();
    expect(() => cvOptions({ folds: '5', pooling: 'gem' })).toThrow(/"gem" is not a pooling: use avg or avg\+max/);
    expect(() => cvOptions({ folds: '5', stack: 'mlp' })).toThrow(/--stack/);
  });
});
