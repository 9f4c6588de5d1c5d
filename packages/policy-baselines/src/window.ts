import {
  SPECIFICATION_VERSION,
  cacheShape,
  definePolicy,
  validateAgainst,
  type JsonSchema,
  type KVCachePolicy,
  type LayerCache,
  type Observation,
  type ObservationNeed,
  type PolicyContext,
} from '@kvfold/core';
import { keepSlots, sinkSlots } from './slots.js';

/** Options of the `window` policy (StreamingLLM). */
export interface WindowOptions {
  /**
   * Number of leading slots (attention sinks) always kept. Default 4, as StreamingLLM (Xiao et al.,
   * ICLR 2024) and kvpress `StreamingLLMPress` (`n_sink=4`). Clamped to `budget - 1` so the newest
   * token always fits.
   */
  readonly sink: number;
}

/** JSON Schema of {@link WindowOptions}. */
export const windowSchema: JsonSchema = {
  type: 'object',
  properties: {
    sink: {
      type: 'integer',
      minimum: 0,
      maximum: 1_000_000,
      default: 4,
      description: 'Leading slots (attention sinks) always kept; StreamingLLM uses 4. Clamped to budget - 1.',
    },
  },
  additionalProperties: false,
};

/**
 * StreamingLLM (Xiao et al., "Efficient Streaming Language Models with Attention Sinks", ICLR 2024):
 * keep the first `sink` slots and the most recent ones that fill the budget; the middle is dropped.
 * The same rule applies at prefill and at every decode step that leaves the cache over budget.
 *
 * Positions are not re-assigned (keys are cached after RoPE with their original positions), unlike
 * the pos-shift variant of the StreamingLLM code.
 */
export class WindowPolicy implements KVCachePolicy {
  /** Specification version implemented. */
  readonly specificationVersion = SPECIFICATION_VERSION;
  /** Registry name. */
  readonly name = 'window';
  /** Nothing to observe: the choice depends on slot order only. */
  readonly needs: readonly ObservationNeed[] = [];
  /** Validated options with defaults filled in. */
  readonly options: WindowOptions;

  /** @throws ConfigError when an option is unknown or out of bounds. */
  constructor(options: Partial<WindowOptions> = {}) {
    this.options = validateAgainst<WindowOptions>(windowSchema, options, 'window options');
  }

  /** Compress the prompt to sink + recent window. */
  async prefill<T>(layer: LayerCache<T>, _observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    return this.evict(layer, ctx);
  }

  /** Evict the oldest non-sink slots back to the budget. */
  async step<T>(layer: LayerCache<T>, _observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    return this.evict(layer, ctx);
  }

  private evict<T>(layer: LayerCache<T>, ctx: PolicyContext<T>): LayerCache<T> {
    const k = ctx.kernels;
    const { heads, length } = cacheShape(k, layer);
    const budget = ctx.budget;
    if (length <= budget) return layer;
    const sink = sinkSlots(this.options.sink, budget);
    const keep = new Int32Array(heads * budget);
    for (let h = 0; h < heads; h++) {
      const row = h * budget;
      for (let j = 0; j < sink; j++) keep[row + j] = j;
      for (let j = sink; j < budget; j++) keep[row + j] = length - budget + j;
    }
    ctx.logger.debug('window: evicted middle slots', { layer: ctx.layerIndex, step: ctx.step, sink, recent: budget - sink, evicted: length - budget });
    return keepSlots(k, layer, keep, heads);
  }
}

/** Registry definition of {@link WindowPolicy}. */
export const windowPolicy = definePolicy<WindowOptions>({
  name: 'window',
  description: 'Keep the first `sink` tokens plus the most recent ones that fill the budget and drop the middle (StreamingLLM, Xiao et al., ICLR 2024).',
  schema: windowSchema,
  create: (options) => new WindowPolicy(options),
});
