/**
 * Errors in words for the person who asked, shared by the doors that talk to people (the bot and
 * the web page). The table has one entry per ErrorCode, so a new code does not compile until it
 * has its words; a door with words of its own for a code passes them as `overrides`.
 * Faults get a generic sentence (and are logged by the caller).
 */
import { CatdogError, type ErrorCode } from './errors.ts';

export type ErrorWords = (err: CatdogError) => string;

export const FAULT_WORDS = '😿 Something went wrong on my side. It has been logged; please try again later.';

const fault: ErrorWords = () => FAULT_WORDS;
const warning: ErrorWords = (err) => `⚠️ ${err.message}`;
const tooBig: ErrorWords = (err) => `📏 That photo is too big for me. ${err.message}`;

export const ERROR_WORDS = {
  unsupported_image: (err) => `🙀 I can't read that as a photo. ${err.message}`,
  image_too_large: tooBig,
  image_dimensions_too_large: tooBig,
  host_not_allowed: (err) => `🔒 ${err.message}`,
  download_failed: (err) => `📡 ${err.message}`,
  busy: (err) => `⏳ ${err.message}`,
  rate_limited: (err) => `⏳ ${err.message}`,
  shutting_down: (err) => `🔁 ${err.message}`,
  model_process_lost: (err) => `🔁 ${err.message} Please try again in a moment.`,
  inference_failed: fault,
  usage: (err) => err.message,
  config: fault,
  job_busy: () => '⏳ Another job is starting right now; one job runs at a time. See `/jobs`.',
  job_data_missing: (err) => `📂 ${err.message}`,
  job_unknown: warning,
  job_not_resumable: warning,
  job_not_running: warning,
  no_head: () => "😿 I have no trained model yet, so I can't tell cats from dogs. The people running me have been told.",
  no_active_model: warning,
  no_rollback: warning,
  model_unknown: warning,
  model_active: warning,
  model_in_history: warning,
  model_exists: fault,
  model_id_invalid: warning,
  registry_corrupt: fault,
  head_backbones: warning,
  head_precision: warning,
  head_format: fault,
  head_mismatch: fault,
  head_missing: fault,
  no_imagenet_top: fault,
  calibration_missing: fault,
  weights_checksum: fault,
  weights_integrity: fault,
  weights_copy: fault,
  weights_download: fault,
  weights_dtype: fault,
  weights_format: fault,
  weights_mismatch: fault,
  weights_missing: fault,
  weights_read: fault,
  weights_size: fault,
  weights_spec: fault,
  weights_truncated: fault,
  weights_write: fault,
  dataset_closed: fault,
  dataset_corrupt: fault,
  dataset_ambiguous: fault,
  dataset_missing: fault,
  dataset_unreadable: fault,
  labels_incomplete: fault,
  labels_invalid: fault,
  labels_missing: fault,
  labels_unreadable: fault,
  features_missing: fault,
  view_format: (err) => err.message,
  pooling_format: (err) => err.message,
  view_size: fault,
  outliers_missing: fault,
  no_test_data: fault,
  no_training_data: fault,
} satisfies Record<ErrorCode, ErrorWords>;

/** Any error, in words for the person who asked. */
export function describeError(err: unknown, overrides: Partial<Record<ErrorCode, ErrorWords>> = {}): string {
  if (!(err instanceof CatdogError)) return FAULT_WORDS;
  return (overrides[err.code] ?? ERROR_WORDS[err.code])(err);
}
