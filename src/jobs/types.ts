/**
 * Job records: what the job runner persists in the store for every heavy job (a retrain or a
 * scoring run), so `/jobs` can tell who ran what and how it ended, and a job cut short by a
 * restart shows as interrupted and can be resumed.
 */
import type { Confusion } from '../train/metrics.ts';

export type JobKind = 'retrain' | 'score';

/**
 * queued: accepted, not started yet · running · succeeded · failed (an error) · cancelled (by a
 * person) · interrupted (the process stopped or died while it ran; resumable).
 */
export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'interrupted';

/** Who did something, as the door knows them (a Discord user id and name; 'cli' etc. elsewhere). */
export interface JobUser {
  id: string;
  name: string;
}

/**
 * What a person asked for: the kind of job, and the data only where they named it. The rest is
 * the data configured on the machine that runs the job (the jobs worker's TRAIN_DATA, TEST_DATA,
 * TEST_LABELS; src/jobs/work.ts jobParams), so a door needs no paths of the jobs machine.
 */
export type JobRequest = { kind: 'retrain'; sources?: string[] } | { kind: 'score'; source?: string; labels?: string | null };

/** A job's parameters once resolved where it runs: every path given. */
export type JobParams = { kind: 'retrain'; sources: string[] } | { kind: 'score'; source: string; labels: string | null };

export interface JobProgress {
  /** open, extract, clean, fit, evaluate, save (retrain); extract, score (score). */
  stage: string;
  message: string;
  done: number | null;
  total: number | null;
  /** Images per second computed in this run (cached photos excluded). */
  imgPerSec: number | null;
  etaSec: number | null;
  /** Photos found in the feature cache (not computed again). */
  cached: number | null;
  at: string;
}

export interface ModelMetrics {
  id: string;
  valLoss: number | null;
  valAcc: number | null;
}

export interface RetrainSummary {
  kind: 'retrain';
  /** The new model, stored in the registry but not active until promoted. */
  modelId: string;
  recipe: string;
  flip: boolean;
  valLoss: number;
  valAcc: number;
  trainCount: number;
  valCount: number;
  outliers: number;
  unreadable: number;
  valBySource: Record<string, { n: number; logloss: number; accuracy: number }>;
  /** The model that was active when the job ended, with the validation metrics recorded when it was trained. */
  active: ModelMetrics | null;
  curvesPng: string;
  outliersCsv: string;
}

export interface ScoreSummary {
  kind: 'score';
  /** The model that scored. */
  model: string;
  n: number;
  unreadable: number;
  msPerImage: number;
  submissionCsv: string;
  logloss: number | null;
  accuracy: number | null;
  confusion: Confusion | null;
  /** Contact sheet of the highest-loss photos (with labels), and how many it shows and how many of those were answered wrong. */
  worstPng: string | null;
  worstShown?: number;
  worstWrong?: number;
}

export type JobResult = RetrainSummary | ScoreSummary;

export interface JobDecision {
  action: 'promoted' | 'discarded';
  by: JobUser;
  at: string;
  detail: string;
}

export interface JobRecord {
  /** Short and increasing: "1", "2", … */
  id: string;
  kind: JobKind;
  status: JobStatus;
  startedBy: JobUser;
  /** What was asked (a door of a distributed deployment records that); the full JobParams once the job started where it runs. */
  params: JobRequest;
  createdAt: string;
  startedAt: string | null;
  endedAt: string | null;
  /** How many times it was started (more than 1 after a resume). */
  attempts: number;
  progress: JobProgress | null;
  result: JobResult | null;
  /** Why it failed, in words. */
  error: string | null;
  cancelledBy: JobUser | null;
  /** What became of a retrained model (promoted or discarded). */
  decision: JobDecision | null;
}

/** A new job's record, before the repository gives it an id: queued, never started. */
export function newJobRecord(params: JobRequest, by: JobUser, now = new Date()): Omit<JobRecord, 'id'> {
  return {
    kind: params.kind,
    status: 'queued',
    startedBy: by,
    params,
    createdAt: now.toISOString(),
    startedAt: null,
    endedAt: null,
    attempts: 0,
    progress: null,
    result: null,
    error: null,
    cancelledBy: null,
    decision: null,
  };
}

/** Where job records are kept (src/store implements it); the runner needs nothing more. */
export interface JobRepository {
  /** Stores a new record with the next id; returns it. */
  create(record: Omit<JobRecord, 'id'>): Promise<JobRecord>;
  get(id: string): Promise<JobRecord | null>;
  /** Applies `patch` (or a function of the current record) and returns the new record; null when unknown. */
  update(id: string, patch: Partial<JobRecord> | ((r: JobRecord) => Partial<JobRecord>)): Promise<JobRecord | null>;
  /** The most recent records, newest first. */
  recent(limit?: number): Promise<JobRecord[]>;
}
