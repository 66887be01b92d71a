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
