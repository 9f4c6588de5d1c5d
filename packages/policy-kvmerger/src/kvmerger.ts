import { BudgetError, HostScratchPool, SPECIFICATION_VERSION, cacheShape, definePolicy, layerTensors, requireObservation, resolveShare, selectSlots, uploadRows, viewNow } from '@kvfold/core';
import type { HostScratch, HostTensor, KVCachePolicy, KVKernels, LayerCache, Observation, ObservationNeed, PolicyContext } from '@kvfold/core';
import { kvmergerSchema, resolveOptions, type KVMergerOptions, type ResolvedKVMergerOptions } from './options.js';
import { isIdentity, linkRanking, planLayer, type LayerPlan, type LinkSelection, type PlanInput } from './plan.js';
import { protectSlots } from './protect.js';
import { planSigmas } from './sigma.js';

/** How one compression runs: the slots to reach, the link rule, and whether merging is allowed at all. */
interface Pass {
  readonly target: number;
  readonly mode: 'exact' | 'paper';
  readonly merge: boolean;
}

/**
 * KVMerger (Wang et al., "Model Tells You Where to Merge: Adaptive KV Cache Merging for LLMs on
 * Long-Context Tasks", arXiv 2407.08454, 2024).
 *
 * Keep the recent window and the heavy hitters verbatim; the other slots form merging sets, runs of
 * consecutive slots whose adjacent key cosine is high (a protected slot breaks runs); each set
 * collapses onto its pivot (highest accumulated attention) with Gaussian-kernel weights from the keys,
 * key = weighted sum, value = |S| x weighted sum (switchable), keeping the pivot's position.
 *
 * Planning happens on the host from the scores and the adjacent cosines (`[heads, length]`); keys and
 * values stay in the backend except for the `rms` / `eq4` sigma modes, which download the keys.
 */
export class KVMergerPolicy implements KVCachePolicy {
  /** Specification version implemented. */
  readonly specificationVersion = SPECIFICATION_VERSION;
  /** Registry name. */
  readonly name = 'kvmerger';
  /** Accumulated attention ranks heavy hitters and picks pivots. */
  readonly needs: readonly ObservationNeed[] = ['attention'];
  /** Validated options with every default filled in. */
  readonly options: ResolvedKVMergerOptions;
  private readonly ratios = new Map<number, number>();
  private readonly prefillLengths = new Map<number, number>();
  private readonly scratch = new HostScratchPool();

  /** @throws ConfigError when an option is unknown or out of bounds. */
  constructor(options: KVMergerOptions = {}) {
    this.options = resolveOptions(options);
  }

  /**
   * Slots kept / prompt slots at the last prefill of each layer (keyed by layer index). In `paper`
   * mode this is the compression the fixed eps achieved (it may exceed the budget); in `exact` mode it
   * is `budget / promptLength` unless the prompt already fitted.
   */
  get lastRatios(): ReadonlyMap<number, number> {
    return this.ratios;
  }

  /** True when `layer` is in `skipLayers` (negative entries count from the end). */
  isSkipped(layer: number, layerCount: number): boolean {
    return this.options.skipLayers.some((s) => (s < 0 ? layerCount + s : s) === layer);
  }

  /** Accumulate the prompt's attention, then compress to the budget (`exact`) or by the fixed eps (`paper`). */
  async prefill<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    checkBudget(ctx);
    const k = ctx.kernels;
    const attention = requireObservation(observed, 'attention', 'kvmerger');
    const scores = k.accumulate(layer.scores, attention);
    const { length } = cacheShape(k, layer);
    const skipped = this.isSkipped(ctx.layerIndex, ctx.layerCount);
    const mode = skipped ? 'exact' : this.options.mode;
    const out = await this.run(layer, scores, ctx, { target: ctx.budget, mode, merge: !skipped }, 'prefill');
    const kept = cacheShape(k, out).length;
    this.ratios.set(ctx.layerIndex, length > 0 ? kept / length : 1);
    this.prefillLengths.set(ctx.layerIndex, kept);
    if (mode === 'paper') {
      ctx.logger.info('kvmerger: paper-mode compression', { layer: ctx.layerIndex, ratio: length > 0 ? kept / length : 1, eps: this.options.eps, kept, length, budget: ctx.budget });
    }
    return out;
  }

  /**
   * Accumulate the new tokens' attention. With `decodeInterval` N > 0, once the cache holds more than
   * target + N slots, re-run the exact procedure on the whole cache back to the target (the budget; in
   * `paper` mode the larger of the budget and what the paper-mode prefill kept in this layer).
   */
  async step<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    checkBudget(ctx);
    const k = ctx.kernels;
    const attention = requireObservation(observed, 'attention', 'kvmerger');
    const scores = k.accumulate(layer.scores, attention);
    const n = this.options.decodeInterval;
    const { length } = cacheShape(k, layer);
    const target = this.options.mode === 'paper' ? Math.max(ctx.budget, this.prefillLengths.get(ctx.layerIndex) ?? ctx.budget) : ctx.budget;
    if (n === 0 || length <= target + n) return { ...layer, scores };
    const merge = !this.isSkipped(ctx.layerIndex, ctx.layerCount);
    return this.run(layer, scores, ctx, { target, mode: 'exact', merge }, 'step');
  }

  /** Compress with `scores` (owned by this call: returned inside the result or disposed). */
  private async run<T>(layer: LayerCache<T>, scores: T, ctx: PolicyContext<T>, pass: Pass, phase: string): Promise<LayerCache<T>> {
    const k = ctx.kernels;
    let out: LayerCache<T> | undefined;
    try {
      const { length } = cacheShape(k, layer);
      if (pass.mode === 'exact' && length <= pass.target) {
        out = { ...layer, scores };
        return out;
      }
      const { result, plan } = await this.compress(k, layer, scores, ctx, pass);
      out = result;
      ctx.logger.debug('kvmerger: compressed', {
        layer: ctx.layerIndex,
        step: ctx.step,
        phase,
        mode: pass.mode,
        merging: pass.merge,
        length,
        kept: plan.outLength,
        merged: plan.merged,
        evicted: plan.evicted,
        eps: plan.effectiveEps,
      });
      return out;
    } finally {
      if (!out || !layerTensors(out).includes(scores)) k.dispose(scores);
    }
  }

  private async compress<T>(k: KVKernels<T>, layer: LayerCache<T>, scores: T, ctx: PolicyContext<T>, pass: Pass): Promise<{ result: LayerCache<T>; plan: LayerPlan }> {
    const scratch = this.scratch.acquire();
    try {
      return await this.compressWith(k, layer, scores, ctx, pass, scratch);
    } finally {
      this.scratch.release(scratch);
    }
  }

  /** {@link compress} with the host arrays of `scratch` (held by this call only). */
  private async compressWith<T>(k: KVKernels<T>, layer: LayerCache<T>, scores: T, ctx: PolicyContext<T>, pass: Pass, scratch: HostScratch): Promise<{ result: LayerCache<T>; plan: LayerPlan }> {
    const { heads, length, headDim } = cacheShape(k, layer);
    const o = this.options;
    // Scores and cosines are read in place where the backend's tensors are host memory (no copy of the
    // [heads, length] arrays); the cosine tensor is disposed once the plan is made. Where the backend only lends
    // a view until its next call (tfjs's wasm heap), they are copied into this call's scratch, which costs a
    // tenth of a download's fresh array.
    const read = async (t: T, name: string): Promise<HostTensor['data']> => {
      if (k.hostView) return k.hostView(t).data;
      const view = viewNow(k, t);
      if (view === undefined || view.dtype !== 'float32') return (await k.toHost(t)).data;
      const copy = scratch.float32(name, view.data.length);
      copy.set(view.data);
      return copy;
    };
    const scoreData = await read(scores, 'scoresRead');
    const cosineT = pass.merge && length >= 2 ? k.adjacentCosine(layer.keys) : undefined;
    let plan: LayerPlan;
    try {
      const cosine = cosineT === undefined ? undefined : await read(cosineT, 'cosineRead');
      const protection = await protectSlots(k, scores, scoreData, {
        heads,
        length,
        recent: resolveShare(o.recent, pass.target),
        heavy: resolveShare(o.heavy, pass.target),
        shared: o.sets === 'shared',
      }, scratch);
      const input: PlanInput = {
        heads,
        length,
        scores: scoreData,
        cosine,
        target: pass.target,
        protection,
        mode: pass.mode,
        eps: o.eps,
        minSimilarity: o.minSimilarity,
        sets: o.sets,
      };
      // The links' ranking runs on the backend's topK kernel (the host's radix selection measured 1.6 ms of a
      // 32 x 4,096 plan; the reference's wasm kernel does it in a sixth of that).
      const ranking = linkRanking(input, scratch);
      let selected: LinkSelection | undefined;
      if (ranking) {
        const rows = uploadRows(k, 'float32', heads, ranking.rows);
        try {
          const links = await selectSlots(k, rows, heads, length - 1, { budget: ranking.count, into: scratch.int32('links', heads * ranking.count) });
          selected = { count: ranking.count, eligible: ranking.eligible, links };
        } finally {
          k.dispose(rows);
        }
      }
      plan = planLayer(input, selected, scratch);
    } finally {
      if (cosineT !== undefined) k.dispose(cosineT);
    }
    if (isIdentity(plan)) return { result: { ...layer, scores }, plan };
    const keys = o.sigma.mode === 'fixed' ? undefined : { data: (await k.toHost(layer.keys)).data, headDim };
    const sigma = planSigmas(plan, o.sigma, keys, scratch);
    const segmentT = uploadRows(k, 'int32', heads, plan.segment);
    const pivotT = uploadRows(k, 'int32', heads, plan.pivot);
    const sigmaT = uploadRows(k, 'float32', heads, sigma);
    try {
      const result = k.mergeSegments({ ...layer, scores }, { segment: segmentT, pivot: pivotT, sigma: sigmaT, valueScale: o.valueScale });
      return { result, plan };
    } finally {
      k.dispose(segmentT, pivotT, sigmaT);
    }
  }
}

function checkBudget<T>(ctx: PolicyContext<T>): void {
  if (!Number.isInteger(ctx.budget) || ctx.budget < 1) {
    throw new BudgetError(`kvmerger: budget ${ctx.budget} must be a positive integer slot count`, { field: 'budget', value: ctx.budget, allowed: 'integer >= 1' });
  }
}

/** Registry definition of {@link KVMergerPolicy}. */
export const kvmergerPolicy = definePolicy<KVMergerOptions>({
  name: 'kvmerger',
  description:
    'Keep recent and heavy-hitter tokens, merge runs of adjacent tokens with similar keys onto their highest-attention pivot with Gaussian-kernel weights (KVMerger, Wang et al. 2024, arXiv 2407.08454).',
  schema: kvmergerSchema,
  create: (options) => new KVMergerPolicy(options),
});
