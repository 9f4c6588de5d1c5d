import {
  SPECIFICATION_VERSION,
  cacheShape,
  definePolicy,
  resolveShare,
  validateAgainst,
  type JsonSchema,
  type KVCachePolicy,
  type LayerCache,
  type Observation,
  type ObservationNeed,
  type PolicyContext,
} from '@kvfold/core';
import { keepSlots } from './slots.js';

/** Options of the `random` policy. */
export interface RandomOptions {
  /**
   * Most recent slots always kept: a share of the budget when in `[0, 1)`, a slot count when an integer
   * `>= 1`. Default 0.5, the same split as the `h2o` policy, so `random` vs `h2o` isolates the value of
   * the heavy-hitter scores (H2O's own "random" ablation).
   */
  readonly recent: number;
}

/** JSON Schema of {@link RandomOptions}. */
export const randomSchema: JsonSchema = {
  type: 'object',
  properties: {
    recent: {
      default: 0.5,
      description: 'Most recent slots always kept: a share of the budget in [0, 1) or an integer slot count >= 1 (clamped to the budget).',
      oneOf: [
        { type: 'number', minimum: 0, exclusiveMaximum: 1 },
        { type: 'integer', minimum: 1 },
      ],
    },
  },
  additionalProperties: false,
};

/**
 * Seeded random eviction: keep the recent window and a uniformly random subset of the older slots
 * (drawn independently per head from `ctx.rng`, so a fixed seed gives the same cache on every backend).
 * The control baseline that shows whether a scoring policy beats chance.
 */
export class RandomPolicy implements KVCachePolicy {
  /** Specification version implemented. */
  readonly specificationVersion = SPECIFICATION_VERSION;
  /** Registry name. */
  readonly name = 'random';
  /** Nothing to observe. */
  readonly needs: readonly ObservationNeed[] = [];
  /** Validated options with defaults filled in. */
  readonly options: RandomOptions;

  /** @throws ConfigError when an option is unknown or out of bounds. */
  constructor(options: Partial<RandomOptions> = {}) {
    this.options = validateAgainst<RandomOptions>(randomSchema, options, 'random options');
  }

  /** Compress the prompt to the budget. */
  async prefill<T>(layer: LayerCache<T>, _observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    return this.evict(layer, ctx);
  }

  /** Evict random older slots back to the budget. */
  async step<T>(layer: LayerCache<T>, _observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    return this.evict(layer, ctx);
  }

  private evict<T>(layer: LayerCache<T>, ctx: PolicyContext<T>): LayerCache<T> {
    const k = ctx.kernels;
    const { heads, length } = cacheShape(k, layer);
    const budget = ctx.budget;
    if (length <= budget) return layer;
    const recent = resolveShare(this.options.recent, budget);
    const older = length - recent;
    const picked = budget - recent;
    const keep = new Int32Array(heads * budget);
    const pool = new Int32Array(older);
    for (let h = 0; h < heads; h++) {
      // Partial Fisher-Yates: the first `picked` entries of the pool become a uniform sample.
      for (let i = 0; i < older; i++) pool[i] = i;
      for (let i = 0; i < picked; i++) {
        const j = i + ctx.rng.int(older - i);
        const t = pool[i];
        pool[i] = pool[j];
        pool[j] = t;
      }
      const chosen = pool.subarray(0, picked).sort();
      keep.set(chosen, h * budget);
      for (let j = 0; j < recent; j++) keep[h * budget + picked + j] = older + j;
    }
    ctx.logger.debug('random: evicted slots', { layer: ctx.layerIndex, step: ctx.step, recent, evicted: length - budget });
    return keepSlots(k, layer, keep, heads);
  }
}

/** Registry definition of {@link RandomPolicy}. */
export const randomPolicy = definePolicy<RandomOptions>({
  name: 'random',
  description: 'Keep the recent window plus a seeded uniformly random subset of older tokens per head (the chance baseline of the H2O ablations).',
  schema: randomSchema,
  create: (options) => new RandomPolicy(options),
});
