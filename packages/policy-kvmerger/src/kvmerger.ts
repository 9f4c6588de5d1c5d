import { BudgetError, HostScratchPool, SPECIFICATION_VERSION, cacheShape, definePolicy, layerTensors, requireObservation, resolveShare, selectSlots, uploadRows, viewNow } from '@kvfold/core';
import type { HostScratch, HostTensor, KVCachePolicy, KVKernels, LayerCache, Observation, ObservationNeed, PolicyContext, SimilarMerge } from '@kvfold/core';
import { kvmergerSchema, resolveOptions, type KVMergerOptions, type ResolvedKVMergerOptions } from './options.js';
import { isIdentity, linkRanking, lowestCosine, planLayer, type LayerPlan, type LinkRanking, type PlanInput } from './plan.js';
import { protectSlots, protectedCounts } from './protect.js';
import { fixedSigmas, planSigmas } from './sigma.js';

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
      const { result, plan } = await this.compress(k, layer, scores, pass);
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

  private async compress<T>(k: KVKernels<T>, layer: LayerCache<T>, scores: T, pass: Pass): Promise<{ result: LayerCache<T>; plan: PlanSummary }> {
    const scratch = this.scratch.acquire();
    try {
      return await this.compressWith(k, layer, scores, pass, scratch);
    } finally {
      this.scratch.release(scratch);
    }
  }

  /** {@link compress} with the host arrays of `scratch` (held by this call only). */
  private async compressWith<T>(k: KVKernels<T>, layer: LayerCache<T>, scores: T, pass: Pass, scratch: HostScratch): Promise<{ result: LayerCache<T>; plan: PlanSummary }> {
    const { heads, headDim } = cacheShape(k, layer);
    const o = this.options;
    const fused = await this.mergeOnBackend(k, layer, scores, pass, scratch);
    if (fused) return fused;
    const planned = await this.makePlan(k, layer, scores, pass, scratch);
    let segment: T;
    let pivot: T;
    let sigma: Float32Array;
    let plan: PlanSummary;
    if ('host' in planned) {
      const host = planned.host;
      if (isIdentity(host)) return { result: { ...layer, scores }, plan: host };
      const keys = o.sigma.mode === 'fixed' ? undefined : { data: (await k.toHost(layer.keys)).data, headDim };
      sigma = planSigmas(host, o.sigma, keys, scratch);
      segment = uploadRows(k, 'int32', heads, host.segment);
      pivot = uploadRows(k, 'int32', heads, host.pivot);
      plan = host;
    } else {
      ({ segment, pivot, summary: plan } = planned);
      sigma = fixedSigmas(heads, plan.outLength, o.sigma.value, scratch);
    }
    try {
      const sigmaT = uploadRows(k, 'float32', heads, sigma);
      try {
        return { result: k.mergeSegments({ ...layer, scores }, { segment, pivot, sigma: sigmaT, valueScale: o.valueScale }), plan };
      } finally {
        k.dispose(sigmaT);
      }
    } finally {
      k.dispose(segment, pivot);
    }
  }

  /**
   * The whole exact-budget compression as the backend's `mergeSimilar` kernel, where the backend implements it and
   * the options are its rule (exact mode, fixed sigma, per-head sets, merging allowed): the kernel computes the
   * cosines, ranks the links, and merges head by head, so the keys are read from memory once for both, and the
   * plan never reaches the host (KVMerger's prefill on the reference backend at 32 x 4,096: 0.79-0.83x the time of
   * the chain of kernels; bench/RESULTS.md, "Eleventh session").
   *
   * Used only where every head is sure to have enough eligible links: no similarity floor, and the protected slots
   * block at most `recent + 2 * heavy` links, which must leave `count` of the `length - 1`. Elsewhere a head could
   * fall short, and the merge would be paid for and dropped. If one still does (non-finite keys), the result is
   * dropped and {@link makePlan} plans the trimming. Undefined when it does not apply or was dropped.
   */
  private async mergeOnBackend<T>(k: KVKernels<T>, layer: LayerCache<T>, scores: T, pass: Pass, scratch: HostScratch): Promise<{ result: LayerCache<T>; plan: PlanSummary } | undefined> {
    const o = this.options;
    const { heads, length } = cacheShape(k, layer);
    if (pass.mode !== 'exact' || !pass.merge || o.sigma.mode !== 'fixed' || (o.sets === 'shared' && heads > 1) || !onBackend(k, 'mergeSimilar')) return undefined;
    const { recent, heavy } = protectedCounts(resolveShare(o.recent, pass.target), resolveShare(o.heavy, pass.target), length);
    const count = length - pass.target;
    if (count < 1 || o.minSimilarity > -1 || recent + 2 * heavy > pass.target - 1) return undefined;
    // The protected slots are the recent window and the heavy hitters: what protectSlots marks, as a list.
    const list = await selectSlots(k, heavy > 0 ? scores : undefined, heads, length, { budget: recent + heavy, recent, into: scratch.int32('heavy', heads * (recent + heavy)) });
    const protect = uploadRows(k, 'int32', heads, list);
    let merged: SimilarMerge<T>;
    try {
      merged = k.mergeSimilar({ ...layer, scores }, { protect, count, minSimilarity: o.minSimilarity, sigma: o.sigma.value, valueScale: o.valueScale });
    } finally {
      k.dispose(protect);
    }
    try {
      // Both read before any other kernel call: a view of tfjs's heap lasts until the next one.
      const eligible = (viewNow(k, merged.eligible) ?? (await k.toHost(merged.eligible))).data;
      if (Array.prototype.some.call(eligible, (n: number) => n < count)) {
        k.dispose(...layerTensors(merged.layer));
        return undefined;
      }
      const lowest = (viewNow(k, merged.lowest) ?? (await k.toHost(merged.lowest))).data;
      const effectiveEps = Array.from(lowest, (v: number) => v);
      return { result: merged.layer, plan: { outLength: length - count, merged: new Array<number>(heads).fill(count), evicted: new Array<number>(heads).fill(0), effectiveEps } };
    } catch (e) {
      k.dispose(...layerTensors(merged.layer));
      throw e;
    } finally {
      k.dispose(merged.eligible, merged.lowest);
    }
  }

  /**
   * The layer's plan: protection, link ranking (on the backend's topK), then the segments, on the backend when
   * {@link linksOnBackend} allows it, else on the host. Host arrays come from `scratch`.
   */
  private async makePlan<T>(k: KVKernels<T>, layer: LayerCache<T>, scores: T, pass: Pass, scratch: HostScratch): Promise<Planned<T>> {
    const { heads, length } = cacheShape(k, layer);
    const o = this.options;
    const scoreData = await readRows(k, scores, 'scoresRead', scratch);
    const cosineT = pass.merge && length >= 2 ? k.adjacentCosine(layer.keys) : undefined;
    try {
      const cosine = cosineT === undefined ? undefined : await readRows(k, cosineT, 'cosineRead', scratch);
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
      if (!ranking) return { host: planLayer(input, undefined, scratch) };
      const rows = uploadRows(k, 'float32', heads, ranking.rows);
      try {
        if (this.linksOnBackend(k, pass, ranking)) return await backendPlan(k, rows, scores, ranking, cosine!, heads, length);
        const links = await selectSlots(k, rows, heads, length - 1, { budget: ranking.count, into: scratch.int32('links', heads * ranking.count) });
        return { host: planLayer(input, { count: ranking.count, eligible: ranking.eligible, links }, scratch) };
      } finally {
        k.dispose(rows);
      }
    } finally {
      if (cosineT !== undefined) k.dispose(cosineT);
    }
  }

  /**
   * Whether the backend walks the selected links into the segment plan itself (its `linkSegments` kernel), which
   * leaves the host only the summary: when every head merges exactly its `count` best links (exact mode, no
   * head short of eligible links, so nothing is trimmed), the bandwidth is fixed (the other modes read the plan
   * on the host), and the backend implements the kernel (elsewhere the reference through the host would only
   * add transfers to the host plan). On the reference backend the walk runs in wasm split by heads: 32 x 16k
   * planned in 1.0 ms on one thread, against 3.6 ms in JavaScript.
   */
  private linksOnBackend<T>(k: KVKernels<T>, pass: Pass, ranking: LinkRanking): boolean {
    if (pass.mode !== 'exact' || this.options.sigma.mode !== 'fixed' || !ranking.eligible.every((n) => n >= ranking.count)) return false;
    return onBackend(k, 'linkSegments');
  }
}

/** What the log reports of a plan (the backend's segment plan stays where it was made). */
type PlanSummary = Pick<LayerPlan, 'outLength' | 'merged' | 'evicted' | 'effectiveEps'>;

/** A layer's plan: made on the host, or the backend's segment plan (tensors the caller disposes) with its summary. */
type Planned<T> = { readonly host: LayerPlan } | { readonly segment: T; readonly pivot: T; readonly summary: PlanSummary };

/**
 * A `[heads, n]` float32 kernel result on the host: in place where the backend's tensors are host memory (no
 * copy); copied into `scratch`'s array `name` where the backend only lends a view until its next call (tfjs's
 * wasm heap), which costs a tenth of a download's fresh array; else downloaded.
 */
async function readRows<T>(k: KVKernels<T>, t: T, name: string, scratch: HostScratch): Promise<HostTensor['data']> {
  if (k.hostView) return k.hostView(t).data;
  const view = viewNow(k, t);
  if (view === undefined || view.dtype !== 'float32') return (await k.toHost(t)).data;
  const copy = scratch.float32(name, view.data.length);
  copy.set(view.data);
  return copy;
}

/**
 * The backend's segment plan for the `count` best links of each head (`rows`: the ranking, every head with at
 * least `count` eligible links): topK picks them, linkSegments walks them; the host only reads the winners for
 * the effective eps.
 */
async function backendPlan<T>(k: KVKernels<T>, rows: T, scores: T, ranking: LinkRanking, cosine: HostTensor['data'], heads: number, length: number): Promise<Planned<T>> {
  const c = ranking.count;
  const links = k.topK(rows, c, 0, length - 1);
  try {
    const { segment, pivot } = k.linkSegments(links, scores);
    try {
      // The winners are read after the last kernel call: a view of tfjs's heap lasts until the next one.
      const chosen = (viewNow(k, links) ?? (await k.toHost(links))).data;
      const effectiveEps = Array.from({ length: heads }, (_, h) => lowestCosine(chosen.subarray(h * c, (h + 1) * c), cosine, h * (length - 1)));
      return { segment, pivot, summary: { outLength: length - c, merged: new Array<number>(heads).fill(c), evicted: new Array<number>(heads).fill(0), effectiveEps } };
    } catch (e) {
      k.dispose(segment, pivot);
      throw e;
    }
  } finally {
    k.dispose(links);
  }
}

/** Per kernels object: the kernels its backend implements (what `kernels()` says; it never changes). */
const backendKernels = new WeakMap<object, ReadonlySet<string>>();

/** Whether `k`'s backend implements `kernel` itself (elsewhere the reference through the host would only add transfers). */
function onBackend<T>(k: KVKernels<T>, kernel: string): boolean {
  let names = backendKernels.get(k);
  if (names === undefined) {
    names = new Set(k.kernels().filter((i) => i.runs === 'backend').map((i) => i.name));
    backendKernels.set(k, names);
  }
  return names.has(kernel);
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
