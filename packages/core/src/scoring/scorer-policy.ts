import { validateOptions } from '../config.js';
import { cacheShape, layerTensors, type LayerCache } from '../kernels.js';
import { SPECIFICATION_VERSION, type JsonSchema, type KVCachePolicy, type Observation, type ObservationNeed, type PolicyContext } from '../policy.js';
import { evictsAtStep, type DecodeMode } from './decode.js';
import { compactLayer, evictInPlace, hasSpareRow, isOrdered, layerViews, type LayerViews } from './in-place.js';
import { chooseEvicted, reorderObservation } from './in-place-select.js';
import { keepSlots, selectSlots, viewNow } from './select.js';

/** Options every {@link ScorerPolicy} accepts besides its own. */
export interface ScorerOptions {
  /** What decode steps do; see {@link DecodeMode}. */
  readonly decode: DecodeMode;
}

/** What a scorer is: its registry name, what it needs observed, and its options' schema. */
export interface ScorerSpec {
  /** Registry name. */
  readonly name: string;
  /** What the policy needs observed. */
  readonly needs: readonly ObservationNeed[];
  /** JSON Schema of its options (with the shared `decode` option, see `decodeSchema`). */
  readonly schema: JsonSchema;
}

/** Slots a scorer keeps whatever their score. */
export interface Protection {
  /** Leading slots (attention sinks). */
  readonly sink?: number;
  /** Trailing (most recent) slots. */
  readonly recent?: number;
}

/**
 * A policy that only says how to score slots (kvpress's `ScorerPress`): it writes {@link score} and,
 * optionally, {@link protect} (sinks and a recent window) and {@link update} (score state kept in
 * `layer.scores`, like H2O's accumulated attention). The base does the rest, the same way for every
 * scorer: under budget it keeps every slot, over budget it keeps the protected slots plus the top scores
 * (one shared selection on the `topK` kernel, {@link selectSlots}) and drops the rest ({@link evict},
 * which merging policies override), at prefill and at decode steps as the shared `decode` option says.
 *
 * Under budget (the cache holds at most `budget` slots) every scorer returns the layer with every slot:
 * unchanged when it keeps no score state, with its updated `layer.scores` when it does. A decode step
 * never evicts the newest slot.
 */
export abstract class ScorerPolicy<Options extends ScorerOptions = ScorerOptions> implements KVCachePolicy {
  /** Specification version implemented. */
  readonly specificationVersion = SPECIFICATION_VERSION;
  /** Registry name. */
  readonly name: string;
  /** What the policy needs observed. */
  readonly needs: readonly ObservationNeed[];
  /** Validated options with defaults filled in. */
  readonly options: Options;

  /**
   * Validate `options` against the spec's schema (once: options `KVFold.policy` already validated pass through).
   * @throws ConfigError naming each bad option.
   */
  constructor(spec: ScorerSpec, options: Partial<Options> | undefined) {
    this.name = spec.name;
    this.needs = spec.needs;
    this.options = validateOptions<Options>(spec.schema, options ?? {}, `${spec.name} options`);
  }

  /**
   * Scores of the slots, float32 `[kvHeads, length]` or `[1, length]` (one decision for every head); higher
   * is kept. Called only when the protected slots leave part of the budget to scores. A returned tensor
   * that is not one of the layer's or the observation's is disposed by the base.
   */
  protected abstract score<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<T> | T;

  /** Slots kept whatever their score (default none). */
  protected protect<T>(_ctx: PolicyContext<T>): Protection {
    return {};
  }

  /** Update the score state (default: none, the layer as is); a new `scores` tensor is owned by the base. */
  protected update<T>(layer: LayerCache<T>, _observed: Observation<T>, _ctx: PolicyContext<T>): LayerCache<T> {
    return layer;
  }

  /** Drop every slot not in `keep` (row-major `[heads, budget]`, ascending); merging policies override it. */
  protected evict<T>(layer: LayerCache<T>, keep: Int32Array, ctx: PolicyContext<T>): Promise<LayerCache<T>> | LayerCache<T> {
    return keepSlots(ctx.kernels, layer, keep);
  }

  /**
   * Whether this policy's decode step may evict in place when the caller allows it (`ctx.inPlace`, a
   * writable backend, decode mode `evict`, one slot over the budget): the slot the shared selection drops
   * is then found on the host and replaced by the newest row ({@link evictInPlace}), with the same result
   * as {@link evict} once put back in order. Default false: a policy opts in only when its {@link score}
   * does not depend on slot order (H2O, CaM) and {@link mergeEvictedInPlace} does what its {@link evict} does.
   */
  protected evictsInPlace(): boolean {
    return false;
  }

  /**
   * What {@link evict} does to the kept slots besides dropping `evict[h]` of each head, done in place on
   * the layer's views before the evicted rows are overwritten (default nothing; CaM merges the evicted value
   * into its successors). `scores` holds the row of each head's scores the selection ranked.
   */
  protected mergeEvictedInPlace<T>(_views: LayerViews, _evict: Int32Array, _ctx: PolicyContext<T>): void {}

  /** The slots kept per head (protected first, then the top scores): the shared selection. */
  protected async select<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<Int32Array> {
    const k = ctx.kernels;
    const { heads, length } = cacheShape(k, layer);
    const { sink = 0, recent: protectedRecent = 0 } = this.protect(ctx);
    // A decode step never evicts the token it just appended (the one the model is decoding).
    const recent = ctx.step > 0 ? Math.max(1, protectedRecent) : protectedRecent;
    const scored = ctx.budget - Math.min(ctx.budget, sink + recent) > 0;
    const scores = scored ? await this.score(layer, observed, ctx) : undefined;
    try {
      return await selectSlots(k, scores, heads, length, { budget: ctx.budget, sink, recent });
    } finally {
      const borrowed = [...layerTensors(layer), observed.attention, observed.lastAttention, observed.queries];
      if (scores !== undefined && !borrowed.includes(scores)) k.dispose(scores);
    }
  }

  /** Score the prompt and compress it to the budget. */
  prefill<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    return this.compress(layer, observed, ctx, true);
  }

  /** Update the scores; evict back to the budget as the `decode` option says. */
  step<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    return this.compress(layer, observed, ctx, false);
  }

  private async compress<T>(input: LayerCache<T>, observedInput: Observation<T>, ctx: PolicyContext<T>, prefill: boolean): Promise<LayerCache<T>> {
    const k = ctx.kernels;
    let layer = input;
    let observed = observedInput;
    const views = ctx.inPlace === true ? layerViews(k, input) : undefined;
    if (views && !prefill && this.evictsInPlace() && this.options.decode === 'evict' && views.length === ctx.budget + 1 && !hasSpareRow(views)) {
      return this.stepInPlace(input, observed, ctx);
    }
    // The O(heads) length test first: the order scan reads every position and count.
    if (views && views.length - (hasSpareRow(views) ? 1 : 0) > ctx.budget && !isOrdered(views)) {
      // An in-place cache this path cannot evict from: back in position order (with its observations) first.
      const compacted = compactLayer(k, input);
      observed = await reorderObservation(k, input, compacted, observedInput);
      layer = compacted;
    }
    const updated = this.update(layer, observed, ctx);
    const { length } = cacheShape(k, updated);
    if (length <= ctx.budget || (!prefill && !evictsAtStep(this.options.decode, length, ctx.budget))) return updated;
    let out: LayerCache<T> | undefined;
    try {
      const keep = await this.select(updated, observed, ctx);
      ctx.logger.debug(`${this.name}: evicted slots`, { layer: ctx.layerIndex, step: ctx.step, evicted: length - ctx.budget });
      out = await this.evict(updated, keep, ctx);
      return out;
    } finally {
      if (updated.scores !== layer.scores && !(out && layerTensors(out).includes(updated.scores))) k.dispose(updated.scores);
      if (layer !== input) {
        const kept = new Set(out ? layerTensors(out) : []);
        k.dispose(...layerTensors(layer).filter((t) => !kept.has(t)));
        for (const f of ['attention', 'lastAttention'] as const) if (observed[f] !== observedInput[f]) k.dispose(observed[f]);
      }
    }
  }

  /**
   * A decode step that drops one slot per head, in place: update the scores, find each head's dropped slot
   * as the shared selection would ({@link chooseEvicted}), let the policy merge it ({@link mergeEvictedInPlace}),
   * then move the newest row over it ({@link evictInPlace}). Returns the input's tensors (edited) with the
   * updated scores; O(heads x length) host work on scores and positions, O(heads x headDim) on keys and values.
   */
  private async stepInPlace<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    const k = ctx.kernels;
    const updated = this.update(layer, observed, ctx);
    try {
      const { sink = 0, recent: protectedRecent = 0 } = this.protect(ctx);
      const recent = ctx.step > 0 ? Math.max(1, protectedRecent) : protectedRecent;
      const scored = ctx.budget - Math.min(ctx.budget, sink + recent) > 0;
      const scores = scored ? await this.score(updated, observed, ctx) : undefined;
      let evict: Int32Array;
      try {
        // The scores first: a download (when they cannot be viewed) may come before the layer's views,
        // which the next call to the kernels may move (see KVKernels.editView).
        const s = scores === undefined ? undefined : { data: (viewNow(k, scores) ?? (await k.toHost(scores))).data as Float32Array, rows: k.shapeOf(scores)[0]! };
        const views = layerViews(k, updated);
        // The layer's views were available at the start of this step (compress checked them) and nothing
        // since has shared its tensors; a missing view here is a backend bug, not a user error.
        if (!views) throw new Error(`${this.name}: the cache's tensors could not be viewed for the in-place step`);
        evict = chooseEvicted(views, s, ctx.budget, sink, recent);
        ctx.logger.debug(`${this.name}: evicted slots in place`, { layer: ctx.layerIndex, step: ctx.step, evicted: 1 });
        this.mergeEvictedInPlace(views, evict, ctx);
        evictInPlace(views, evict);
      } finally {
        const borrowed = [...layerTensors(updated), observed.attention, observed.lastAttention, observed.queries];
        if (scores !== undefined && !borrowed.includes(scores)) k.dispose(scores);
      }
      return updated;
    } catch (e) {
      if (updated.scores !== layer.scores) k.dispose(updated.scores);
      throw e;
    }
  }
}
