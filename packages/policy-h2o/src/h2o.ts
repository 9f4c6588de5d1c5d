import { accumulateAttention, definePolicy, hostTensor, resolveShare, rows, ScorerPolicy, type KVKernels, type LayerCache, type Observation, type PolicyContext, type Protection } from '@kvfold/core';
import { h2oSchema, type H2OOptions } from './schema.js';

/**
 * Heavy-Hitter Oracle (Zhang et al., NeurIPS 2023; real-drop `H2OKVCache_LayerWise` of
 * FMInference/H2O): each slot's score is the attention it has received, summed over every query so
 * far. Per kv head, the `recent` newest slots are kept plus the highest-scored older slots that fill the
 * budget; the rest are dropped for good, scores travel with the kept slots. The prompt is compressed
 * right after prefill; each decode step that leaves the cache over budget evicts back to it.
 */
export class H2OPolicy extends ScorerPolicy<H2OOptions> {
  /** @throws ConfigError when an option is unknown or out of bounds. */
  constructor(options: Partial<H2OOptions> = {}) {
    // H2O scores are the column sums of the attention each call observes.
    super({ name: 'h2o', needs: ['attention'], schema: h2oSchema }, options);
  }

  protected override update<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): LayerCache<T> {
    return accumulateAttention(layer, observed, ctx, this.name);
  }

  /** Scores do not depend on slot order (normalized scores use each slot's position), so a decode step may evict in place. */
  protected override evictsInPlace(): boolean {
    return true;
  }

  protected override protect<T>(ctx: PolicyContext<T>): Protection {
    return { recent: resolveShare(this.options.recent, ctx.budget) };
  }

  protected score<T>(layer: LayerCache<T>, _observed: Observation<T>, ctx: PolicyContext<T>): Promise<T> | T {
    return this.options.normalize ? normalizedScores(ctx.kernels, layer) : layer.scores;
  }
}

/**
 * Accumulated attention divided by how many queries could see each slot. Every token processed so far
 * was a query once, so a slot at position `p` was visible to the `newest - p + 1` queries at positions
 * `p..newest`, where `newest` is the head's highest position (the token just appended).
 */
async function normalizedScores<T>(k: KVKernels<T>, layer: LayerCache<T>): Promise<T> {
  const [scores, positions] = await Promise.all([k.toHost(layer.scores), k.toHost(layer.positions)]);
  const s = rows(scores);
  const p = rows(positions);
  const out = new Float32Array(scores.data.length);
  let o = 0;
  for (let h = 0; h < s.length; h++) {
    // The newest token is the head's last slot; max() also covers a cache in place, not in position order.
    let newest = -Infinity;
    for (const x of p[h]) if (x > newest) newest = x;
    for (let j = 0; j < s[h].length; j++) out[o++] = s[h][j] / Math.max(1, newest - p[h][j] + 1);
  }
  return k.fromHost(hostTensor('float32', scores.shape, out));
}

/** Registry definition of {@link H2OPolicy}. */
export const h2oPolicy = definePolicy<H2OOptions>({
  name: 'h2o',
  description: 'Keep the recent window plus the tokens with the highest accumulated attention per kv head, evicting the rest at prefill and whenever a decode step exceeds the budget (H2O, Zhang et al., NeurIPS 2023).',
  schema: h2oSchema,
  create: (options) => new H2OPolicy(options),
});
