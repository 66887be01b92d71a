/**
 * Model operations for admins, on the live classifier: what is active, the stored models,
 * promote (force: a person looked at the comparison), rollback and discard. Promotion and
 * rollback change the registry AND swap the classifier's head in place (Classifier.setHead), so
 * the next request answers with the new model — no restart, no failed request (requests in
 * flight finish with the head they started with). Operations run one at a time.
 */
import { headPrecisions, type Head, type HeadFile } from '../model/head.ts';
import type { Registry } from '../model/registry.ts';
import { precisionLabel, type BackboneName, type Precisions } from '../model/types.ts';

export interface ModelView {
  id: string;
  active: boolean;
  date: string | null;
  recipe: string | null;
  tta: 'none' | 'flip';
  backbones: string[];
  /** Precision of the backbone features the head was trained on, in words (precisionLabel). */
  precision: string;
  photos: number | null;
  sources: string[];
  valLoss: number | null;
  valAcc: number | null;
  valBySource: Record<string, { n: number; logloss: number; accuracy: number }>;
  outliersExcluded: number | null;
}

export function modelView(id: string, head: HeadFile, active: boolean): ModelView {
  const meta = head.meta ?? {};
  const metrics = meta.metrics ?? {};
  const num = (v: unknown) => (typeof v === 'number' ? v : null);
  return {
    id,
    active,
    date: typeof meta.date === 'string' ? meta.date : null,
    recipe: typeof meta.recipe === 'string' ? meta.recipe : null,
    tta: head.tta ?? 'none',
    backbones: head.backbones,
    precision: precisionLabel(headPrecisions(head), head.backbones),
    photos: num(meta.photos),
    sources: Array.isArray(meta.sources) ? meta.sources.map(String) : [],
    valLoss: num(metrics.valLoss),
    valAcc: num(metrics.valAcc),
    valBySource: metrics.valBySource ?? {},
    outliersExcluded: num(meta.outliers?.excluded),
  };
}

/** What /model show tells: the registry's active model, the head answering, the one before, and (distributed) each inference worker's. */
export interface ActiveModels {
  registry: ModelView | null;
  live: string | null;
  previous: string | null;
  workers: { name: string; model: string | null }[] | null;
}

/**
 * The model operations the admin commands use: ModelAdmin, where the registry is on this machine,
 * or (distributed, src/scale/models.ts) the same operations run by the jobs worker, where it is.
 */
export interface Models {
  active(): Promise<ActiveModels>;
  list(): Promise<ModelView[]>;
  promote(id: string): Promise<{ previous: string | null }>;
  rollback(): Promise<{ from: string | null; to: string }>;
  discard(id: string): Promise<void>;
}

/**
 * What answers with the active head: the in-process Classifier, the embedded model process
 * (src/scale/embedded.ts) or, distributed, every inference worker through Redis (src/scale).
 */
export interface LiveHead {
  readonly backbones: BackboneName[];
  /** The precision each backbone answers in, where known (a head must have been trained on the same). */
  readonly precisions?: Precisions | null;
  /** The id of the head answering now (null: none). */
  info(): { model: string | null };
  /** Answers with `head` from now on. */
  setHead(head: Head): void | Promise<void>;
  /** Distributed: what each inference worker answers with now. */
  answering?(): Promise<{ name: string; model: string | null }[]>;
}

export class ModelAdmin implements Models {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    readonly classifier: LiveHead,
    private readonly registry: Registry,
  ) {}

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }

  /** The active model per the registry, and the head the classifier answers with now. */
  async active(): Promise<ActiveModels> {
    const state = this.registry.readActiveState();
    const registry = state.active ? modelView(state.active, (await this.registry.loadModel(state.active)).file, true) : null;
    const workers = this.classifier.answering ? await this.classifier.answering() : null;
    return { registry, live: this.classifier.info().model, previous: state.history.at(-1) ?? null, workers };
  }

  /** Every stored model, newest first. */
  async list(): Promise<ModelView[]> {
    return (await this.registry.listModels()).map((m) => modelView(m.id, m.head, m.active)).reverse();
  }

  /** Makes `id` active (forced: the person saw the comparison) and swaps the live head. */
  promote(id: string): Promise<{ previous: string | null }> {
    return this.serial(async () => {
      const head = await this.registry.loadModel(id);
      this.checkFits(head);
      const previous = this.registry.readActiveState().active;
      await this.registry.promote(id, { force: true });
      await this.classifier.setHead(head);
      return { previous };
    });
  }

  /** Back to the previously active model, in the registry and in the live classifier. */
  rollback(): Promise<{ from: string | null; to: string }> {
    return this.serial(async () => {
      const state = this.registry.readActiveState();
      const from = state.active;
      const previous = state.history.at(-1);
      // Check the head fits the live backbones (and their precisions) before the registry changes.
      if (previous) this.checkFits(await this.registry.loadModel(previous));
      const to = await this.registry.rollback();
      await this.classifier.setHead(await this.registry.loadModel(to));
      return { from, to };
    });
  }

  /**
   * A head the live backbones cannot answer with is refused before the registry changes: an fp32
   * head made active while the backbones run int8 would be refused at the next start.
   */
  private checkFits(head: Head): void {
    head.checkBackbones(this.classifier.backbones);
    const p = this.classifier.precisions;
    if (p) head.checkPrecision(p);
  }

  /** Deletes a candidate model that was never made active. */
  discard(id: string): Promise<void> {
    return this.serial(() => this.registry.removeModel(id));
  }
}
