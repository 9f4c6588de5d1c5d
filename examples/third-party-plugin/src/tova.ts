import {
  MissingObservationError,
  SPECIFICATION_VERSION,
  ShapeError,
  cacheShape,
  definePolicy,
  hostTensor,
  validateAgainst,
  type KVCachePolicy,
  type KVKernels,
  type LayerCache,
  type Observation,
  type ObservationNeed,
  type PolicyContext,
} from '@kvfold/core';
import { tovaSchema, type TovaOptions } from './schema.js';

/**
 * TOVA, "Transformers are Multi-State RNNs" (Oren et al., 2024, arXiv 2401.06104): whenever the cache
 * holds more than the budget, drop the tokens that the current (last) query attends to least, with the
 * attention averaged over heads so the whole layer makes one decision. The newest token is always kept
 * (it is the one being decoded; kvpress's `TOVAPress` does the same).
 *
 * TOVA keeps no score state: each decision uses only the current query, so `scores` travel with the kept
 * slots untouched. At prefill the prompt is cut to the budget by the last prompt token's attention; at
 * each decode step one token (or, when a call appended several, as many as needed) is evicted.
 */
export class TovaPolicy implements KVCachePolicy {
  /** Specification version implemented. */
  readonly specificationVersion = SPECIFICATION_VERSION;
  /** Registry name. */
  readonly name = 'tova';
  /** TOVA ranks by the attention of the most recent query only. */
  readonly needs: readonly ObservationNeed[] = ['lastAttention'];
  /** Validated options with defaults filled in. */
  readonly options: TovaOptions;

  /** @throws ConfigError when an option is unknown or not one of the allowed values. */
  constructor(options: Partial<TovaOptions> = {}) {
    this.options = validateAgainst<TovaOptions>(tovaSchema, options, 'tova options');
  }

  /** Cut the prompt to the budget by the last prompt token's attention. */
  async prefill<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    return this.evict(layer, observed, ctx);
  }

  /** Evict back to the budget by the newest query's attention. */
  async step<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    return this.evict(layer, observed, ctx);
  }

  private async evict<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    const k = ctx.kernels;
    const { heads, length } = cacheShape(k, layer);
    const budget = ctx.budget;
    if (length <= budget) return layer;
    if (observed.lastAttention === undefined) throw new MissingObservationError(this.name, 'lastAttention');
    const keep = await (this.options.scope === 'layer' ? layerKeep(k, layer, observed.lastAttention, budget) : headKeep(k, observed.lastAttention, heads, length, budget));
    const index = k.fromHost(hostTensor('int32', [heads, budget], keep));
    try {
      ctx.logger.debug('tova: evicted slots', { layer: ctx.layerIndex, step: ctx.step, scope: this.options.scope, evicted: length - budget });
      return k.gather(layer, index);
    } finally {
      k.dispose(index);
    }
  }
}

/**
 * Slots kept per head when each head decides alone: its `budget - 1` best-attended older slots (ties to
 * the lower slot, the kernels' rule) followed by the newest slot. Row-major `[heads, budget]`.
 */
async function headKeep<T>(k: KVKernels<T>, last: T, heads: number, length: number, budget: number): Promise<Int32Array> {
  const keep = new Int32Array(heads * budget);
  const older = budget - 1;
  if (older > 0) {
    const top = k.topK(last, older, 0, length - 1);
    try {
      const chosen = (await k.toHost(top)).data;
      for (let h = 0; h < heads; h++) keep.set(chosen.subarray(h * older, (h + 1) * older), h * budget);
    } finally {
      k.dispose(top);
    }
  }
  for (let h = 0; h < heads; h++) keep[h * budget + older] = length - 1;
  return keep;
}

/**
 * Slots kept by the layer-wide rule: the last query's attention averaged over kv heads ranks the slots
 * once, and every head keeps the same ones. Slots are tokens only when every head holds the same
 * positions, which TOVA itself maintains; a cache whose heads disagree is refused rather than averaged
 * across different tokens.
 * @throws ShapeError when the heads hold different positions.
 */
async function layerKeep<T>(k: KVKernels<T>, layer: LayerCache<T>, last: T, budget: number): Promise<Int32Array> {
  const [attention, positions] = await Promise.all([k.toHost(last), k.toHost(layer.positions)]);
  const [heads, length] = attention.shape as [number, number];
  const p = positions.data;
  for (let h = 1; h < heads; h++) {
    for (let j = 0; j < length; j++) {
      if (p[h * length + j] !== p[j]) {
        throw new ShapeError(`tova (scope "layer") needs every kv head to hold the same positions, but head ${h} slot ${j} holds position ${p[h * length + j]} and head 0 holds ${p[j]}; use scope "head" for caches compressed per head`, { field: 'positions', head: h, slot: j });
      }
    }
  }
  const mean = new Float32Array(length);
  for (let h = 0; h < heads; h++) for (let j = 0; j < length; j++) mean[j]! += attention.data[h * length + j]! / heads;
  // One row ranked by the backend's topK, then the same slots for every head.
  const ranked = k.fromHost(hostTensor('float32', [1, length], mean));
  let row: Int32Array;
  try {
    row = await headKeep(k, ranked, 1, length, budget);
  } finally {
    k.dispose(ranked);
  }
  const keep = new Int32Array(heads * budget);
  for (let h = 0; h < heads; h++) keep.set(row, h * budget);
  return keep;
}

/** Registry definition of {@link TovaPolicy}. */
export const tovaPolicy = definePolicy<TovaOptions>({
  name: 'tova',
  description: 'Evict the tokens the current query attends to least, averaged over kv heads (one decision per layer), keeping the newest token (TOVA, Oren et al., 2024).',
  schema: tovaSchema,
  create: (options) => new TovaPolicy(options),
});
