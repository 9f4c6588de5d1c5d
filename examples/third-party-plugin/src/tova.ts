import { ShapeError, ScorerPolicy, definePolicy, hostTensor, requireObservation, type KVKernels, type LayerCache, type Observation, type PolicyContext, type Protection } from '@kvfold/core';
import { tovaSchema, type TovaOptions } from './schema.js';

/**
 * TOVA, "Transformers are Multi-State RNNs" (Oren et al., 2024, arXiv 2401.06104): whenever the cache
 * holds more than the budget, drop the tokens that the current (last) query attends to least, with the
 * attention averaged over heads so the whole layer makes one decision. The newest token is always kept
 * (it is the one being decoded; kvpress's `TOVAPress` does the same).
 *
 * A scorer: it only says how slots score (the last query's attention) and what it protects (the newest
 * slot); kvfold's shared selection keeps the top scores. TOVA keeps no score state, so `scores` travel
 * with the kept slots untouched.
 */
export class TovaPolicy extends ScorerPolicy<TovaOptions> {
  /** @throws ConfigError when an option is unknown or not one of the allowed values. */
  constructor(options: Partial<TovaOptions> = {}) {
    // TOVA ranks by the attention of the most recent query only.
    super({ name: 'tova', needs: ['lastAttention'], schema: tovaSchema }, options);
  }

  protected override protect(): Protection {
    return { recent: 1 };
  }

  protected score<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<T> | T {
    const last = requireObservation(observed, 'lastAttention', this.name);
    return this.options.scope === 'layer' ? headMean(ctx.kernels, layer, last) : last;
  }
}

/**
 * The last query's attention averaged over kv heads, `[1, length]`: one ranking every head follows. Slots
 * are tokens only when every head holds the same positions, which TOVA itself maintains; a cache whose
 * heads disagree is refused rather than averaged across different tokens.
 * @throws ShapeError when the heads hold different positions.
 */
async function headMean<T>(k: KVKernels<T>, layer: LayerCache<T>, last: T): Promise<T> {
  const [attention, positions] = await Promise.all([k.toHost(last), k.toHost(layer.positions)]);
  const [heads, length] = attention.shape as [number, number];
  const p = positions.data;
  const mean = new Float32Array(length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < length; j++) {
      if (p[h * length + j] !== p[j]) {
        throw new ShapeError(`tova (scope "layer") needs every kv head to hold the same positions, but head ${h} slot ${j} holds position ${p[h * length + j]} and head 0 holds ${p[j]}; use scope "head" for caches compressed per head`, { field: 'positions', head: h, slot: j });
      }
      mean[j]! += attention.data[h * length + j]! / heads;
    }
  }
  return k.fromHost(hostTensor('float32', [1, length], mean));
}

/** Registry definition of {@link TovaPolicy}. */
export const tovaPolicy = definePolicy<TovaOptions>({
  name: 'tova',
  description: 'Evict the tokens the current query attends to least, averaged over kv heads (one decision per layer), keeping the newest token (TOVA, Oren et al., 2024).',
  schema: tovaSchema,
  create: (options) => new TovaPolicy(options),
});
