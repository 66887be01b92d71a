/**
 * Typed errors, thrown where a problem starts. Each door (CLI, bot, web) turns them into words
 * for people in one place; `message` is already a sentence a person understands.
 */
export class CatdogError extends Error {
  /** Stable machine-readable code, e.g. `image_too_large`. */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
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
  constructor(code: string, message: string, options?: { cause?: unknown }) {
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
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
