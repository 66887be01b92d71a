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
import { accessSync, closeSync, constants, existsSync, openSync, readSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ModelError } from '../errors.ts';
import { headId, type Classifier } from '../model/classifier.ts';
import type { Registry } from '../model/registry.ts';
import { defaultCacheDir, type ExtractProgress } from '../train/features.ts';
import { answeredWrong, score } from '../train/score.ts';
import { train } from '../train/train.ts';
import { JobDataMissing, type JobContext, type JobWork, type ProgressUpdate } from './runner.ts';
import type { JobKind, JobParams, ModelMetrics, RetrainSummary, ScoreSummary } from './types.ts';

export interface JobData {
  train: string[];
  test: string | null;
  testLabels: string | null;
}

const NO_TRAIN_DATA =
  "No training data is configured: set TRAIN_DATA to Kaggle's train.zip (several sources comma-separated, e.g. train.zip,train-200px.zip) or the folders they unpack to.";

/** Whether `path` starts like a zip file (a local file header, or the end record of an empty zip). */
function looksLikeZip(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(4);
    const n = readSync(fd, head, 0, 4, 0);
    return n === 4 && head[0] === 0x50 && head[1] === 0x4b && ((head[2] === 3 && head[3] === 4) || (head[2] === 5 && head[3] === 6));
  } finally {
    closeSync(fd);
  }
}

/**
 * What stops a retrain on `sources` (TRAIN_DATA) on this machine, one sentence each: none
 * configured, a path that is not there, cannot be read, or is neither a folder nor a zip file.
 * Empty when every source can be opened. Cheap (a stat and 4 bytes per source), so the jobs
 * worker checks it at startup and every few seconds after.
 */
export function trainDataProblems(sources: readonly string[]): string[] {
  if (!sources.length) return [NO_TRAIN_DATA];
  const problems: string[] = [];
  for (const p of sources) {
    try {
      const info = statSync(p);
      if (info.isDirectory()) accessSync(p, constants.R_OK | constants.X_OK);
      else if (!info.isFile()) problems.push(`${p} is neither a folder nor a zip file`);
      else if (!looksLikeZip(p)) problems.push(`${p} is not a zip file`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      problems.push(code === 'ENOENT' || code === 'ENOTDIR' ? `${p} is not there` : `${p} cannot be read (${code ?? String(err)})`);
    }
  }
  return problems;
}

/** The parameters of a job of `kind` from the configured data; throws JobDataMissing when none is configured. */
export function jobParams(kind: JobKind, data: JobData): JobParams {
  if (kind === 'retrain') {
    if (!data.train.length) throw new JobDataMissing(NO_TRAIN_DATA);
    return { kind, sources: [...data.train] };
  }
  if (!data.test) throw new JobDataMissing("No test data is configured: set TEST_DATA to Kaggle's test.zip or the folder it unpacks to (and TEST_LABELS for metrics).");
  return { kind, source: data.test, labels: data.testLabels };
}

/** Validation metrics a model recorded when it was trained. */
export async function recordedMetrics(registry: Registry, id: string): Promise<ModelMetrics> {
  const m = (await registry.loadModel(id)).file.meta?.metrics ?? {};
  return { id, valLoss: typeof m.valLoss === 'number' ? m.valLoss : null, valAcc: typeof m.valAcc === 'number' ? m.valAcc : null };
}

function extractUpdate(stage: string, message: string, p: ExtractProgress): ProgressUpdate {
  return { stage, message, done: p.done, total: p.total, imgPerSec: p.imgPerSec, etaSec: p.etaSec, cached: p.cached };
}

/**
 * Throws JobDataMissing when a job's data is not there, and no_active_model when a scoring run has
 * no model to score with. Wherever the work then runs (this process or a model process).
 */
export function checkJobParams(params: JobParams, hasActiveHead: boolean): void {
  if (params.kind === 'retrain') {
    const problems = trainDataProblems(params.sources);
    if (problems.length) throw new JobDataMissing(`The training data cannot be used: ${problems.join('; ')} (TRAIN_DATA).`);
    return;
  }
  if (!existsSync(params.source)) throw new JobDataMissing(`The test data is not there: ${params.source} (TEST_DATA).`);
  if (params.labels && !existsSync(params.labels)) throw new JobDataMissing(`The test labels are not there: ${params.labels} (TEST_LABELS).`);
  if (!hasActiveHead) {
    throw new ModelError('no_active_model', 'No model is active, so there is nothing to score with: run /retrain and promote a model first.');
  }
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
