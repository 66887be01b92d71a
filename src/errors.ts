/**
 * Typed errors, thrown where a problem starts. Each door (CLI, bot, web) turns them into words
 * for people in one place; `message` is already a sentence a person understands.
 *
 * Every code is in ErrorCode, and ERRORS says once, for each, whether it is the user's input or
 * the moment (expected: answered politely, not logged as a fault), its metrics outcome and its
 * HTTP status. A new code does not compile until the table (and each door's words) know it.
 */
import type { ErrorOutcome } from './metrics.ts';

export type ErrorCode =
  // the photo and its download
  | 'unsupported_image'
  | 'image_too_large'
  | 'image_dimensions_too_large'
  | 'host_not_allowed'
  | 'download_failed'
  // the moment
  | 'busy'
  | 'rate_limited'
  | 'shutting_down'
  // the model process or an inference worker (src/scale)
  | 'model_process_lost'
  | 'inference_failed'
  // how a command was used
  | 'usage'
  // configuration
  | 'config'
  // admin jobs
  | 'job_busy'
  | 'job_data_missing'
  | 'job_unknown'
  | 'job_not_resumable'
  | 'job_not_running'
  // the model registry and heads
  | 'no_head'
  | 'no_active_model'
  | 'no_rollback'
  | 'model_unknown'
  | 'model_active'
  | 'model_in_history'
  | 'model_exists'
  | 'model_id_invalid'
  | 'registry_corrupt'
  | 'head_backbones'
  | 'head_precision'
  | 'head_format'
  | 'head_mismatch'
  | 'head_missing'
  | 'no_imagenet_top'
  // weights
  | 'calibration_missing'
  | 'weights_checksum'
  | 'weights_integrity'
  | 'weights_copy'
  | 'weights_download'
  | 'weights_dtype'
  | 'weights_format'
  | 'weights_mismatch'
  | 'weights_missing'
  | 'weights_read'
  | 'weights_size'
  | 'weights_spec'
  | 'weights_truncated'
  | 'weights_write'
  // data sets and the training pipeline
  | 'dataset_closed'
  | 'dataset_corrupt'
  | 'dataset_ambiguous'
  | 'dataset_missing'
  | 'dataset_unreadable'
  | 'labels_incomplete'
  | 'labels_invalid'
  | 'labels_missing'
  | 'labels_unreadable'
  | 'features_missing'
  | 'view_format'
  | 'pooling_format'
  | 'view_size'
  | 'outliers_missing'
  | 'no_test_data'
  | 'no_training_data';

export interface ErrorFacts {
  /** The user's input or the moment: answered politely and not logged as a fault. */
  expected: boolean;
  /** The `outcome` label of catdog_requests_total. */
  outcome: ErrorOutcome;
  /** The web door's status code. */
  http: number;
}

const fault: ErrorFacts = { expected: false, outcome: 'error', http: 500 };
const refusal: ErrorFacts = { expected: true, outcome: 'error', http: 500 };

export const ERRORS = {
  unsupported_image: { expected: true, outcome: 'bad_input', http: 415 },
  image_too_large: { expected: true, outcome: 'too_large', http: 413 },
  image_dimensions_too_large: { expected: true, outcome: 'too_large', http: 413 },
  host_not_allowed: { expected: true, outcome: 'host_not_allowed', http: 500 },
  download_failed: { expected: true, outcome: 'download_failed', http: 500 },
  busy: { expected: true, outcome: 'busy', http: 503 },
  rate_limited: { expected: true, outcome: 'cooldown', http: 429 },
  shutting_down: { expected: true, outcome: 'shutting_down', http: 503 },
  model_process_lost: { expected: true, outcome: 'error', http: 503 },
  inference_failed: fault,
  usage: { expected: true, outcome: 'bad_input', http: 500 },
  config: fault,
  job_busy: refusal,
  job_data_missing: refusal,
  job_unknown: refusal,
  job_not_resumable: refusal,
  job_not_running: refusal,
  no_head: { expected: false, outcome: 'error', http: 503 },
  no_active_model: refusal,
  no_rollback: refusal,
  model_unknown: refusal,
  model_active: refusal,
  model_in_history: refusal,
  model_exists: fault,
  model_id_invalid: refusal,
  registry_corrupt: fault,
  head_backbones: refusal,
  head_precision: refusal,
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
  view_format: { expected: true, outcome: 'bad_input', http: 500 },
  pooling_format: { expected: true, outcome: 'bad_input', http: 500 },
  view_size: fault,
  outliers_missing: fault,
  no_test_data: fault,
  no_training_data: fault,
} as const satisfies Record<ErrorCode, ErrorFacts>;

export class CatdogError extends Error {
  /** Stable machine-readable code, e.g. `image_too_large`. */
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The table's facts for any error; anything that is not a CatdogError is a fault. */
export function errorFacts(err: unknown): ErrorFacts {
  return err instanceof CatdogError ? ERRORS[err.code] : fault;
}

/** True for errors that are the user's input or the moment (answered politely, not logged as faults). */
export function isExpected(err: unknown): boolean {
  return errorFacts(err).expected;
}

/** A mistake in how a command was used (missing option, wrong channel…); the message is the answer. */
export class UsageError extends CatdogError {
  constructor(message: string) {
    super('usage', message);
  }
}

/** The input is not an image we can read (zero bytes, text, HTML, truncated or corrupt data). */
export class UnsupportedImage extends CatdogError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('unsupported_image', message, options);
  }
}

/**
 * The file is an SVG (vector drawing). Refused on purpose: vector files are never rendered, so a
 * crafted drawing cannot make the renderer fetch, expand or allocate anything. Same `code` as
 * UnsupportedImage, so a door that handles that one handles this one too.
 */
export class VectorImageRefused extends UnsupportedImage {
  constructor() {
    super('This is an SVG drawing, not a photo; vector images are not accepted. Please send a JPEG, PNG or WebP photo.');
  }
}

/** The file is larger than the byte limit. */
export class ImageTooLarge extends CatdogError {
  constructor(readonly bytes: number, readonly limitBytes: number) {
    super('image_too_large', `The file is ${formatBytes(bytes)}, over the ${formatBytes(limitBytes)} limit.`);
  }
}

/** The image has more pixels than the pixel limit (checked from the header, before decoding). */
export class ImageDimensionsTooLarge extends CatdogError {
  constructor(readonly width: number, readonly height: number, readonly limitPixels: number) {
    super(
      'image_dimensions_too_large',
      `The image is ${width}x${height} pixels, over the limit of ${(limitPixels / 1e6).toFixed(0)} megapixels.`,
    );
  }
}

/** A model, head or weight file is missing, corrupt or does not fit the configured backbones. */
export class ModelError extends CatdogError {
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** A download was refused because its host is not on the allowlist (ATTACHMENT_HOSTS). */
export class HostNotAllowed extends CatdogError {
  constructor(readonly host: string, readonly allowed: readonly string[]) {
    super(
      'host_not_allowed',
      `I only fetch images from ${allowed.join(', ')}; "${host}" is not one of them. Upload the photo to Discord instead.`,
    );
  }
}

/** A download failed: bad URL, network error, error status, or too slow. `message` says which. */
export class DownloadFailed extends CatdogError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('download_failed', message, options);
  }
}

/** The classifier queue is full: come back in a moment. */
export class Busy extends CatdogError {
  constructor() {
    super('busy', "I'm busy with other photos right now. Please try again in a moment.");
  }
}

/** One client sent more than its share (the web door's per-client limit): come back after `retryAfterMs`. */
export class RateLimited extends CatdogError {
  constructor(readonly retryAfterMs: number) {
    super('rate_limited', `Too many photos from you in a short time. Please try again in ${Math.max(1, Math.ceil(retryAfterMs / 1000))} s.`);
  }
}

/** The process is shutting down and takes no new work. */
export class ShuttingDown extends CatdogError {
  constructor() {
    super('shutting_down', "I'm restarting. Please try again in a minute.");
  }
}

/** The environment (or .env) has missing or wrong values; `problems` holds one sentence for each. */
export class ConfigError extends CatdogError {
  constructor(readonly problems: readonly string[]) {
    super('config', `Configuration problems:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/**
 * A data source (a Kaggle zip or its unpacked folder) or a labels file is missing, damaged or not
 * laid out like Kaggle's Dogs vs. Cats. `message` names the path and what is wrong with it.
 */
export class DatasetError extends CatdogError {
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
