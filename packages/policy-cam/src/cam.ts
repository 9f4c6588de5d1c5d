import {
  accumulateAttention,
  cacheShape,
  definePolicy,
  HostScratch,
  viewNow,
  resolveShare,
  rows,
  ScorerPolicy,
  sinkWindow,
  uploadRows,
  type HostTensor,
  type LayerCache,
  type LayerViews,
  type Observation,
  type PolicyContext,
  type Protection,
} from '@kvfold/core';
import { checkKeep, type KeepChooser } from './choosers.js';
import { mergeEvictedInPlace } from './in-place.js';
import { planNeighbourMerge } from './plan.js';
import { camSchema, type CaMOptions } from './schema.js';

/**
 * CaM, cache merging (Zhang et al., ICML 2024): an eviction rule picks the survivors (H2O's recent window
 * plus heavy hitters, or StreamingLLM's sinks plus recent window: the shared selection), and before an
 * evicted slot `i` is dropped its value is added to the next `m` kept slots after it,
 * `v_t += M_i * v_i / m'` (`m'` = targets that exist, at most `m`), with
 * `M_i ~ Bernoulli(clamp(A_i / mean(A over the targets), 0, 1))` and `A` the accumulated attention
 * (H2O's score, kept in `layer.scores`). Keys of evicted slots are dropped, not merged, so counts stay 1.
 *
 * Variant: the official real-drop streaming path (`StartRecentKVCache_cam`) and kvpress `CAMPress`:
 * accumulated attention and the mean over the m targets (the paper's Eq. 14).
 */
export class CaMPolicy extends ScorerPolicy<CaMOptions> {
  /** The merge plan's host arrays, reused from one eviction to the next (each plan is uploaded before the next is made). */
  private readonly planScratch = new HostScratch();

  /**
   * @param chooser replaces the `evict` option with a custom rule (code only; not expressible in JSON).
   * @throws ConfigError when an option is unknown or out of bounds.
   */
  constructor(options: Partial<CaMOptions> = {}, private readonly chooser?: KeepChooser) {
    // The gate and the H2O rule use accumulated attention.
    super({ name: 'cam', needs: ['attention'], schema: camSchema }, options);
  }

  protected override update<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): LayerCache<T> {
    return accumulateAttention(layer, observed, ctx, this.name);
  }

  protected override protect<T>(ctx: PolicyContext<T>): Protection {
    return this.options.evict === 'window' ? sinkWindow(this.options.sink, ctx.budget) : { recent: resolveShare(this.options.recent, ctx.budget) };
  }

  protected score<T>(layer: LayerCache<T>): T {
    return layer.scores;
  }

  protected override async select<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<Int32Array> {
    if (!this.chooser) return super.select(layer, observed, ctx);
    const { heads, length } = cacheShape(ctx.kernels, layer);
    const scores = rows(await ctx.kernels.toHost(layer.scores));
    return checkKeep(await this.chooser({ layer, scores, budget: ctx.budget, ctx }), heads, length, ctx.budget);
  }

  /** In place when the caller allows it, unless a custom chooser replaces the shared selection. */
  protected override evictsInPlace(): boolean {
    return this.chooser === undefined;
  }

  /** The merge `evict()` plans, for the one slot per head an in-place decode step drops. */
  protected override mergeEvictedInPlace<T>(views: LayerViews, evict: Int32Array, ctx: PolicyContext<T>): void {
    mergeEvictedInPlace(views, evict, this.options.mergeBudget, this.options.gate, ctx.rng);
  }

  /** Merge each evicted value into its kept successors, then drop it. */
  protected override async evict<T>(layer: LayerCache<T>, keep: Int32Array, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    const k = ctx.kernels;
    const heads = cacheShape(k, layer).heads;
    // The plan reads the scores before any other kernel call: in place where the backend allows it.
    const p = planNeighbourMerge(keep, headRows(viewNow(k, layer.scores) ?? (await k.toHost(layer.scores))), this.options.mergeBudget, this.options.gate, ctx.rng, this.planScratch);
    const up = (dtype: 'int32' | 'float32', data: Int32Array | Float32Array) => uploadRows(k, dtype, heads, data);
    const plan = { keep: up('int32', p.keep), source: up('int32', p.source), targetStart: up('int32', p.targetStart), targetCount: up('int32', p.targetCount), gate: up('float32', p.gate) };
    try {
      ctx.logger.debug('cam: merged', { layer: ctx.layerIndex, step: ctx.step, merged: p.open / Math.max(1, heads) });
      return k.mergeIntoNeighbours(layer, plan);
    } finally {
      k.dispose(...Object.values(plan));
    }
  }
}

/** One view per head of a `[heads, n]` host tensor (no copy). */
function headRows(t: HostTensor): Float32Array[] {
  const [h, n] = t.shape as [number, number];
  const data = t.data as Float32Array;
  return Array.from({ length: h }, (_, i) => data.subarray(i * n, (i + 1) * n));
}

/** Registry definition of {@link CaMPolicy}. */
export const camPolicy = definePolicy<CaMOptions>({
  name: 'cam',
  description: 'Evict by H2O (or a sink + recent window) and, before dropping a token, add its value to its next m kept tokens with a Bernoulli gate of its accumulated attention over theirs (CaM, Zhang et al., ICML 2024).',
  schema: camSchema,
  create: (options) => new CaMPolicy(options),
});
