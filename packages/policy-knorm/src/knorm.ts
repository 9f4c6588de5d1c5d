import { ScorerPolicy, definePolicy, hostTensor, type LayerCache, type Observation, type PolicyContext } from '@kvfold/core';
import { knormSchema, type KnormOptions } from './schema.js';

/**
 * Knorm (Devoto et al., "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression", EMNLP
 * 2024, arXiv 2406.11430; kvpress `KnormPress`): keys with a low L2 norm draw high attention, so each head
 * keeps the slots whose keys have the lowest norms. The score is `-||k||` from the backend's `keyNorms`
 * kernel; it needs no attention and no queries.
 */
export class KnormPolicy extends ScorerPolicy<KnormOptions> {
  /** @throws ConfigError when an option is unknown. */
  constructor(options: Partial<KnormOptions> = {}) {
    // Key norms need nothing observed.
    super({ name: 'knorm', needs: [], schema: knormSchema }, options);
  }

  protected async score<T>(layer: LayerCache<T>, _observed: Observation<T>, ctx: PolicyContext<T>): Promise<T> {
    const k = ctx.kernels;
    const norms = k.keyNorms(layer.keys);
    try {
      // topK keeps the highest scores: negate on the host ([heads, length] floats, small next to the keys).
      const host = await k.toHost(norms);
      return k.fromHost(hostTensor('float32', host.shape, host.data.map((x) => -x)));
    } finally {
      k.dispose(norms);
    }
  }
}

/** Registry definition of {@link KnormPolicy}. */
export const knormPolicy = definePolicy<KnormOptions>({
  name: 'knorm',
  description: 'Keep the slots whose keys have the lowest L2 norm per head; needs no attention (Knorm, Devoto et al., EMNLP 2024).',
  schema: knormSchema,
  create: (options) => new KnormPolicy(options),
});
