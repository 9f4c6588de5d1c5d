import {
  MissingObservationError,
  SPECIFICATION_VERSION,
  cacheShape,
  definePolicy,
  hostTensor,
  rows,
  validateAgainst,
  type JsonSchema,
  type KVCachePolicy,
  type LayerCache,
  type NeighbourMergePlan,
  type Observation,
  type ObservationNeed,
  type PolicyContext,
} from '@kvfold/core';
import { checkKeep, h2oChooser, int32Rows, windowChooser, type KeepChooser } from './choosers.js';
import { planNeighbourMerge, type GateMode } from './plan.js';

/** Options of the `cam` policy. */
export interface CaMOptions {
  /** Which slots are evicted: `h2o` (recent window + heavy hitters, default) or `window` (StreamingLLM sink + recent, as the official CaM code). */
  readonly evict: 'h2o' | 'window';
  /** With `evict: 'h2o'`: recent slots kept, a share of the budget in `[0, 1)` or a count `>= 1`. Default 0.5 (H2O's heavy = recent split). */
  readonly recent: number;
  /** With `evict: 'window'`: leading sink slots kept (StreamingLLM). Default 4. */
  readonly sink: number;
  /** m: how many kept successors receive an evicted value. Default 32 (kvpress `CAMPress`, CaM's masked-simulation code); the official streaming code uses 16. */
  readonly mergeBudget: number;
  /** `bernoulli` (the paper's Eq. 14, default) or `expected` (weight = merge probability; a variance-free variant, not in the paper). */
  readonly gate: GateMode;
}

/** JSON Schema of {@link CaMOptions}. */
export const camSchema: JsonSchema = {
  type: 'object',
  properties: {
    evict: {
      enum: ['h2o', 'window'],
      default: 'h2o',
      description: 'Eviction rule: h2o (recent window + top accumulated attention) or window (StreamingLLM sink + recent, the official CaM base).',
    },
    recent: {
      default: 0.5,
      description: "With evict 'h2o': most recent slots kept, a share of the budget in [0, 1) or an integer slot count >= 1; the rest are heavy hitters.",
      oneOf: [
        { type: 'number', minimum: 0, exclusiveMaximum: 1 },
        { type: 'integer', minimum: 1 },
      ],
    },
    sink: {
      type: 'integer',
      minimum: 0,
      maximum: 1_000_000,
      default: 4,
      description: "With evict 'window': leading sink slots always kept (StreamingLLM uses 4); clamped to budget - 1.",
    },
    mergeBudget: {
      type: 'integer',
      minimum: 1,
      maximum: 1_000_000,
      default: 32,
      description: 'm: number of kept successors an evicted value is spread over (kvpress CAMPress 32; official CaM streaming code 16).',
    },
    gate: {
      enum: ['bernoulli', 'expected'],
      default: 'bernoulli',
      description: 'bernoulli: M ~ Bernoulli(p) as in CaM Eq. 14; expected: weight p itself (deterministic, variance-free variant, not from the paper).',
    },
  },
  additionalProperties: false,
};

/**
 * CaM, cache merging (Zhang et al., ICML 2024): an eviction rule picks the survivors, and before an
 * evicted slot `i` is dropped its value is added to the next `m` kept slots after it,
 * `v_t += M_i * v_i / m'` (`m'` = targets that exist, at most `m`), with
 * `M_i ~ Bernoulli(clamp(A_i / mean(A over the targets), 0, 1))` and `A` the accumulated attention
 * (H2O's score, kept in `layer.scores`). Keys of evicted slots are dropped, not merged, so counts stay 1.
 *
 * Variant: the official real-drop streaming path (`generate_task/streaming_llm/kv_cache_cam.py`,
 * `StartRecentKVCache_cam`) and kvpress `CAMPress`: accumulated attention and the mean over the m
 * targets, which is the paper's Eq. 14. The masked-simulation paths of the official repository use the
 * current step's attention or a max reference instead, and never drop anything.
 */
export class CaMPolicy implements KVCachePolicy {
  /** Specification version implemented. */
  readonly specificationVersion = SPECIFICATION_VERSION;
  /** Registry name. */
  readonly name = 'cam';
  /** The gate and the H2O chooser use accumulated attention. */
  readonly needs: readonly ObservationNeed[] = ['attention'];
  /** Validated options with defaults filled in. */
  readonly options: CaMOptions;
  private readonly chooser: KeepChooser;

  /**
   * @param chooser replaces the `evict` option with a custom rule (code only; not expressible in JSON).
   * @throws ConfigError when an option is unknown or out of bounds.
   */
  constructor(options: Partial<CaMOptions> = {}, chooser?: KeepChooser) {
    this.options = validateAgainst<CaMOptions>(camSchema, options, 'cam options');
    this.chooser = chooser ?? (this.options.evict === 'window' ? windowChooser(this.options.sink) : h2oChooser(this.options.recent));
  }

  /** Accumulate the prompt's attention, then merge-and-evict down to the budget. */
  async prefill<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    return this.update(layer, observed, ctx);
  }

  /** Accumulate the new queries' attention; merge-and-evict back to the budget when over it. */
  async step<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    return this.update(layer, observed, ctx);
  }

  private async update<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    const k = ctx.kernels;
    if (observed.attention === undefined) throw new MissingObservationError(this.name, 'attention');
    const scores = k.accumulate(layer.scores, observed.attention);
    const scored: LayerCache<T> = { ...layer, scores };
    const { heads, length } = cacheShape(k, layer);
    if (length <= ctx.budget) return scored;
    const temporaries: T[] = [scores];
    try {
      const hostScores = rows(await k.toHost(scores));
      const keep = checkKeep(await this.chooser({ layer: scored, scores: hostScores, budget: ctx.budget, ctx }), heads, length, ctx.budget);
      const p = planNeighbourMerge(keep, hostScores, this.options.mergeBudget, this.options.gate, ctx.rng);
      const upload = (data: Int32Array): T => {
        const t = int32Rows(ctx, data, heads);
        temporaries.push(t);
        return t;
      };
      const gate = k.fromHost(hostTensor('float32', [heads, p.sources], p.gate));
      temporaries.push(gate);
      const plan: NeighbourMergePlan<T> = {
        keep: upload(p.keep),
        source: upload(p.source),
        targetStart: upload(p.targetStart),
        targetCount: upload(p.targetCount),
        gate,
      };
      let merged = 0;
      for (const g of p.gate) if (g > 0) merged++;
      ctx.logger.debug('cam: merged and evicted slots', { layer: ctx.layerIndex, step: ctx.step, evicted: length - ctx.budget, merged: merged / Math.max(1, heads) });
      return k.mergeIntoNeighbours(scored, plan);
    } finally {
      k.dispose(...temporaries);
    }
  }
}

/** Registry definition of {@link CaMPolicy}. */
export const camPolicy = definePolicy<CaMOptions>({
  name: 'cam',
  description: 'Evict by H2O (or a sink + recent window) and, before dropping a token, add its value to its next m kept tokens with a Bernoulli gate of its accumulated attention over theirs (CaM, Zhang et al., ICML 2024).',
  schema: camSchema,
  create: (options) => new CaMPolicy(options),
});
