import { SPECIFICATION_VERSION, definePolicy, validateOptions, type KVCachePolicy, type LayerCache, type Observation, type ObservationNeed, type PolicyContext } from '@kvfold/core';
import { fullSchema, type FullOptions } from './schema.js';

/**
 * The uncompressed baseline: every token stays, whatever the budget, so benchmarks have an upper
 * bound to compare the compressing policies against.
 */
export class FullPolicy implements KVCachePolicy {
  /** Specification version implemented. */
  readonly specificationVersion = SPECIFICATION_VERSION;
  /** Registry name. */
  readonly name = 'full';
  /** Nothing to observe: the policy never looks at attention. */
  readonly needs: readonly ObservationNeed[] = [];

  /** @throws ConfigError when `options` has any property. */
  constructor(options: FullOptions = {}) {
    validateOptions<FullOptions>(fullSchema, options, 'full options');
  }

  /** Return the input layer unchanged (same object). */
  async prefill<T>(layer: LayerCache<T>, _observed?: Observation<T>, _ctx?: PolicyContext<T>): Promise<LayerCache<T>> {
    return layer;
  }

  /** Return the input layer unchanged (same object). */
  async step<T>(layer: LayerCache<T>, _observed?: Observation<T>, _ctx?: PolicyContext<T>): Promise<LayerCache<T>> {
    return layer;
  }
}

/** Registry definition of {@link FullPolicy}. */
export const fullPolicy = definePolicy<FullOptions>({
  name: 'full',
  description: 'Keep every token and ignore the budget (the uncompressed baseline every KV-cache compression paper reports).',
  schema: fullSchema,
  create: (options) => new FullPolicy(options),
});
