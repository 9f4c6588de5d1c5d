import { ScorerPolicy, cacheShape, definePolicy, hostTensor, requireObservation, type LayerCache, type Observation, type PolicyContext, type Protection } from '@kvfold/core';
import { snapkvSchema, type SnapKVOptions } from './schema.js';

/** A query position below every slot's: the query sees nothing and adds nothing to `observe`'s sums. */
const SEES_NOTHING = -2147483648;

/**
 * SnapKV (Li et al., "SnapKV: LLM Knows What You are Looking for Before Generation", NeurIPS 2024, arXiv
 * 2404.14469; kvpress `SnapKVPress`): the attention of the last `window` prompt queries (the observation
 * window) over the earlier slots, averaged over each GQA group and smoothed by an average pooling of
 * `kernelSize` neighbours, ranks them; the window itself is always kept. The attention comes from the
 * backend's `observe` kernel with the queries before the window masked out, so it needs the prompt's queries.
 */
export class SnapKVPolicy extends ScorerPolicy<SnapKVOptions> {
  /** @throws ConfigError when an option is unknown or out of bounds. */
  constructor(options: Partial<SnapKVOptions> = {}) {
    // The window's queries, attended over the cache with `observe`.
    super({ name: 'snapkv', needs: ['queries'], schema: snapkvSchema }, options);
  }

  protected override protect<T>(ctx: PolicyContext<T>): Protection {
    return { recent: Math.min(this.options.window, ctx.newTokens) };
  }

  protected async score<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<T> {
    const k = ctx.kernels;
    const queries = requireObservation(observed, 'queries', this.name);
    const n = k.shapeOf(queries)[1]!;
    const { heads, length } = cacheShape(k, layer);
    const w = Math.min(this.options.window, n);
    // The queries are this call's tokens, the last n slots; only the window's see anything.
    const slots = (await k.toHost(layer.positions)).data;
    const qpos = Int32Array.from({ length: n }, (_, t) => (t < n - w ? SEES_NOTHING : slots[length - n + t]!));
    const qp = k.fromHost(hostTensor('int32', [n], qpos));
    const o = k.observe(layer, queries, qp, { groupReduction: 'mean' });
    k.dispose(qp, o.lastAttention);
    let attention: Float32Array;
    try {
      attention = (await k.toHost(o.attention)).data as Float32Array;
    } finally {
      k.dispose(o.attention);
    }
    return k.fromHost(hostTensor('float32', [heads, length], pool(attention, heads, length, length - w, this.options.kernelSize)));
  }
}

/** Average pooling of each head's first `prefix` scores over `size` neighbours, zero-padded (kvpress's `avg_pool1d`). */
function pool(x: Float32Array, heads: number, length: number, prefix: number, size: number): Float32Array {
  const out = new Float32Array(heads * length);
  const half = size >> 1;
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < prefix; j++) {
      let s = 0;
      for (let i = Math.max(0, j - half); i <= Math.min(prefix - 1, j + half); i++) s += x[h * length + i]!;
      out[h * length + j] = s / size;
    }
  }
  return out;
}

/** Registry definition of {@link SnapKVPolicy}. */
export const snapkvPolicy = definePolicy<SnapKVOptions>({
  name: 'snapkv',
  description: 'Rank the prompt by the pooled attention of its last window of queries and keep the top slots plus the window (SnapKV, Li et al., NeurIPS 2024).',
  schema: snapkvSchema,
  create: (options) => new SnapKVPolicy(options),
});
