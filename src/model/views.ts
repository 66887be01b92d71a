/**
 * Views of a photo: what the backbone sees. A view is a square input size and whether the photo
 * is mirrored, written "224", "224f", "288", "288f". Features of several views are cached
 * (training augmentation) and averaged at answer time; a head records the views it expects.
 *
 * A view at a size other than the backbone's own needs a backbone that takes any input size
 * (`anySize`: ResNet50). Each view has a one-byte code in the feature cache: the original
 * layout's 0 (the photo at 224) and 1 (its mirror) stay as they were, so existing caches keep
 * working; other sizes (multiples of 16, 32..2032) are 2 * size / 16 + flip.
 */
import { ModelError } from '../errors.ts';

export interface ViewSpec {
  size: number;
  flip: boolean;
}

/** The size the feature cache's codes 0 and 1 stand for (ResNet50's input). */
export const BASE_VIEW_SIZE = 224;

export function viewName(v: ViewSpec): string {
  return `${v.size}${v.flip ? 'f' : ''}`;
}

export function parseView(s: string): ViewSpec {
  const m = /^(\d{2,4})(f?)$/.exec(s.trim());
  if (!m) throw new ModelError('view_format', `"${s}" is not a view: write a size in px, "f" for the mirror image (224, 224f, 288f).`);
  const size = Number(m[1]);
  if (size < 32 || size > 2032 || size % 16 !== 0) throw new ModelError('view_format', `View size ${size} must be a multiple of 16 from 32 to 2032.`);
  return { size, flip: m[2] === 'f' };
}

/** "224,224f,288" → views, in order, no duplicates. */
export function parseViews(s: string | readonly string[]): ViewSpec[] {
  const parts = typeof s === 'string' ? s.split(',').filter((x) => x.trim()) : [...s];
  if (!parts.length) throw new ModelError('view_format', 'No views given.');
  const views = parts.map(parseView);
  const names = views.map(viewName);
  if (new Set(names).size !== names.length) throw new ModelError('view_format', `Views repeat: ${names.join(',')}.`);
  return views;
}

/** The feature cache's one-byte code for a view. */
export function viewCode(v: ViewSpec): number {
  if (v.size === BASE_VIEW_SIZE) return v.flip ? 1 : 0;
  return (v.size / 16) * 2 + (v.flip ? 1 : 0);
}

export function viewFromCode(code: number): ViewSpec {
  if (code === 0 || code === 1) return { size: BASE_VIEW_SIZE, flip: code === 1 };
  return { size: (code >> 1) * 16, flip: (code & 1) === 1 };
}

/**
 * The view whose ResNet50 features the "neither" rule compares with the class centroids: the photo
 * at 224 px, or the first view when 224 is not one (classifier answers, scripts/neither.ts fits).
 */
export function neitherFeatureView(views: readonly ViewSpec[]): ViewSpec {
  return views.find((v) => v.size === BASE_VIEW_SIZE && !v.flip) ?? views[0]!;
}

/** The views of the original pipeline: the photo, and with flip averaging its mirror too. */
export function legacyViews(flip: boolean): ViewSpec[] {
  return flip ? [{ size: BASE_VIEW_SIZE, flip: false }, { size: BASE_VIEW_SIZE, flip: true }] : [{ size: BASE_VIEW_SIZE, flip: false }];
}
