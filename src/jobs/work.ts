/**
 * What the jobs do: the real pipeline (src/train) driven with the classifier the doors serve
 * from — the SAME instance, so a job's backbone batches queue behind interactive requests in the
 * classifier's priority lock (an interactive request waits for at most one batch).
 *
 * retrain: cleaning + features (cache reused) + head training on TRAIN_DATA, evaluation; the new
 * model is stored in the registry, NOT made active (promotion is a separate, deliberate step).
 * score: the active head on TEST_DATA → submission.csv; with TEST_LABELS log loss, accuracy,
 * confusion matrix and the worst-errors contact sheet.
 * Outputs go to <DATA_DIR>/jobs/<job id>/.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ModelError } from '../errors.ts';
import { headId, type Classifier } from '../model/classifier.ts';
import type { Registry } from '../model/registry.ts';
import { defaultCacheDir, type ExtractProgress } from '../train/features.ts';
import { answeredWrong, score } from '../train/score.ts';
import { train } from '../train/train.ts';
import { checkJobParams } from './data.ts';
import type { JobContext, JobWork, ProgressUpdate } from './runner.ts';
import type { JobParams, ModelMetrics, RetrainSummary, ScoreSummary } from './types.ts';

/** Validation metrics a model recorded when it was trained. */
export async function recordedMetrics(registry: Registry, id: string): Promise<ModelMetrics> {
  const m = (await registry.loadModel(id)).file.meta?.metrics ?? {};
  return { id, valLoss: typeof m.valLoss === 'number' ? m.valLoss : null, valAcc: typeof m.valAcc === 'number' ? m.valAcc : null };
}

function extractUpdate(stage: string, message: string, p: ExtractProgress): ProgressUpdate {
  return { stage, message, done: p.done, total: p.total, imgPerSec: p.imgPerSec, etaSec: p.etaSec, cached: p.cached };
}

export function pipelineWork(o: { classifier: Classifier; dataDir: string; registry: Registry }): JobWork {
  const { classifier } = o;
  const cacheDir = defaultCacheDir(o.dataDir);

  async function check(params: JobParams): Promise<void> {
    checkJobParams(params, classifier.activeHead !== null);
  }

  async function retrain(params: Extract<JobParams, { kind: 'retrain' }>, ctx: JobContext): Promise<RetrainSummary> {
    const outDir = join(o.dataDir, 'jobs', ctx.record.id);
    const r = await train({
      sources: params.sources,
      classifier,
      registry: o.registry,
      cacheDir,
      outDir,
      signal: ctx.signal,
      onProgress: (p) => ctx.progress(p.extract ? extractUpdate(p.stage, p.message, p.extract) : { stage: p.stage, message: p.message }),
    });
    const { active } = o.registry.readActiveState();
    return {
      kind: 'retrain',
      modelId: r.modelId,
      recipe: r.chosen.recipe,
      flip: r.chosen.flip,
      valLoss: r.chosen.fitted.valLoss,
      valAcc: r.chosen.fitted.valAcc,
      trainCount: r.trainCount,
      valCount: r.valCount,
      outliers: r.outliers,
      unreadable: r.failures.length,
      valBySource: r.valBySource,
      active: active ? await recordedMetrics(o.registry, active) : null,
      curvesPng: r.curvesPng,
      outliersCsv: r.outliersCsv,
    };
  }

  async function scoreJob(params: Extract<JobParams, { kind: 'score' }>, ctx: JobContext): Promise<ScoreSummary> {
    const head = classifier.activeHead;
    if (!head) throw new ModelError('no_active_model', 'No model is active, so there is nothing to score with.');
    const outDir = join(o.dataDir, 'jobs', ctx.record.id);
    await mkdir(outDir, { recursive: true });
    const submissionCsv = join(outDir, 'submission.csv');
    const worstPng = params.labels ? join(outDir, 'highest-loss.png') : null;
    ctx.progress({ stage: 'extract', message: `scoring ${params.source}` });
    const r = await score({
      source: params.source,
      classifier,
      cacheDir,
      out: submissionCsv,
      labels: params.labels ?? undefined,
      worstPng: worstPng ?? undefined,
      signal: ctx.signal,
      onProgress: (p) => ctx.progress(extractUpdate('extract', `features ${p.done}/${p.total}`, p)),
    });
    return {
      kind: 'score',
      model: headId(head),
      n: r.n,
      unreadable: r.failures.length,
      msPerImage: r.msPerImage,
      submissionCsv,
      logloss: r.logloss ?? null,
      accuracy: r.accuracy ?? null,
      confusion: r.confusion ?? null,
      worstPng,
      worstShown: r.worst?.length ?? 0,
      worstWrong: r.worst?.filter(answeredWrong).length ?? 0,
    };
  }

  return {
    check,
    run: (params, ctx) => (params.kind === 'retrain' ? retrain(params, ctx) : scoreJob(params, ctx)),
  };
}
