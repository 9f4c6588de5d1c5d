import { definePolicy, hostTensor, resolveShare, ScorerPolicy, cacheShape, type LayerCache, type Observation, type PolicyContext, type Protection } from '@kvfold/core';
import { randomSchema, type RandomOptions } from './schema.js';

/**
 * Seeded random eviction: keep the recent window and a uniformly random subset of the older slots. The
 * score of every slot is an independent uniform draw from `ctx.rng` (head-major, then slot order), so the
 * top scores are a uniform sample and a fixed seed gives the same cache on every backend. The control
 * baseline that shows whether a scoring policy beats chance.
 */
export class RandomPolicy extends ScorerPolicy<RandomOptions> {
  /** @throws ConfigError when an option is unknown or out of bounds. */
  constructor(options: Partial<RandomOptions> = {}) {
    super({ name: 'random', needs: [], schema: randomSchema }, options);
  }

  protected override protect<T>(ctx: PolicyContext<T>): Protection {
    return { recent: resolveShare(this.options.recent, ctx.budget) };
  }

  protected score<T>(layer: LayerCache<T>, _observed: Observation<T>, ctx: PolicyContext<T>): T {
    const { heads, length } = cacheShape(ctx.kernels, layer);
    const draws = Float32Array.from({ length: heads * length }, () => ctx.rng.next());
    return ctx.kernels.fromHost(hostTensor('float32', [heads, length], draws));
  }
}

/** Registry definition of {@link RandomPolicy}. */
export const randomPolicy = definePolicy<RandomOptions>({
  name: 'random',
  description: 'Keep the recent window plus a seeded uniformly random subset of older tokens per head (the chance baseline of the H2O ablations).',
  schema: randomSchema,
  create: (options) => new RandomPolicy(options),
});
