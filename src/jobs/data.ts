/**
 * Where a job's data is and whether this machine can open it: a person's request (/retrain,
 * /score) names a kind of job; the data is the configured TRAIN_DATA, TEST_DATA, TEST_LABELS of
 * the machine that runs it (jobParams), and what would stop it there is said in sentences
 * (jobDataProblems: the jobs worker's heartbeat carries them, the doors refuse at once what would fail).
 */
import { accessSync, closeSync, constants, existsSync, openSync, readSync, statSync } from 'node:fs';
import { CatdogError, ModelError } from '../errors.ts';
import type { JobParams, JobRequest } from './types.ts';

/** The data a job needs is not configured or not there. `message` says which and where. */
export class JobDataMissing extends CatdogError {
  constructor(message: string) {
    super('job_data_missing', message);
  }
}

export interface JobData {
  train: string[];
  test: string | null;
  testLabels: string | null;
}

const NO_TEST_DATA = "No test data is configured: set TEST_DATA to Kaggle's test.zip or the folder it unpacks to (and TEST_LABELS for metrics).";
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

/** One sentence when `p` cannot be opened as a data set (a folder or a zip file), else null. */
function sourceProblem(p: string): string | null {
  try {
    const info = statSync(p);
    if (info.isDirectory()) accessSync(p, constants.R_OK | constants.X_OK);
    else if (!info.isFile()) return `${p} is neither a folder nor a zip file`;
    else if (!looksLikeZip(p)) return `${p} is not a zip file`;
    return null;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? `${p} is not there` : `${p} cannot be read (${code ?? String(err)})`;
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
  return sources.map(sourceProblem).filter((p): p is string => p !== null);
}

/** What stops a job with these (resolved) parameters on this machine, one sentence each; empty when its data can be opened. */
function paramsProblems(params: JobParams): string[] {
  if (params.kind === 'retrain') return trainDataProblems(params.sources);
  const problems: string[] = [];
  const source = sourceProblem(params.source);
  if (source) problems.push(source);
  if (params.labels && !existsSync(params.labels)) problems.push(`the labels ${params.labels} are not there`);
  return problems;
}

/**
 * What stops the job a person asked for on this machine, with this machine's data for what they
 * did not name: nothing configured, or a path that cannot be opened (one sentence each; empty:
 * nothing). The same check for /retrain (TRAIN_DATA) and /score (TEST_DATA, TEST_LABELS): the
 * jobs worker reports both in its heartbeat and the doors refuse at once what would fail.
 */
export function jobDataProblems(request: JobRequest, data: JobData): string[] {
  try {
    return paramsProblems(jobParams(request, data));
  } catch (err) {
    if (err instanceof JobDataMissing) return [err.message];
    throw err;
  }
}

/**
 * The parameters of the job a person asked for: what they named, and for the rest the data
 * configured on the machine that runs it (`data`: its TRAIN_DATA, TEST_DATA, TEST_LABELS).
 * Throws JobDataMissing when neither says where the data is.
 */
export function jobParams(request: JobRequest, data: JobData): JobParams {
  if (request.kind === 'retrain') {
    const sources = request.sources ?? data.train;
    if (!sources.length) throw new JobDataMissing(NO_TRAIN_DATA);
    return { kind: 'retrain', sources: [...sources] };
  }
  const source = request.source ?? data.test;
  if (!source) throw new JobDataMissing(NO_TEST_DATA);
  const labels = request.labels !== undefined ? request.labels : request.source !== undefined ? null : data.testLabels;
  return { kind: 'score', source, labels };
}

/**
 * Throws JobDataMissing when a job's data is not there, and no_active_model when a scoring run has
 * no model to score with. Wherever the work then runs (this process or a model process).
 */
export function checkJobParams(params: JobParams, hasActiveHead: boolean): void {
  const problems = paramsProblems(params);
  if (params.kind === 'retrain') {
    if (problems.length) throw new JobDataMissing(`The training data cannot be used: ${problems.join('; ')} (TRAIN_DATA).`);
    return;
  }
  if (problems.length) throw new JobDataMissing(`The test data cannot be used: ${problems.join('; ')} (TEST_DATA, TEST_LABELS).`);
  if (!hasActiveHead) {
    throw new ModelError('no_active_model', 'No model is active, so there is nothing to score with: run /retrain and promote a model first.');
  }
}
