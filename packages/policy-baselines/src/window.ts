import { definePolicy, ShapeError, sinkWindow, ScorerPolicy, type LayerCache, type PolicyContext, type Protection } from '@kvfold/core';
import { windowSchema, type WindowOptions } from './schema.js';

/**
 * StreamingLLM (Xiao et al., "Efficient Streaming Language Models with Attention Sinks", ICLR 2024):
 * keep the first `sink` slots and the most recent ones that fill the budget; the middle is dropped.
 * The same rule applies at prefill and at every decode step that leaves the cache over budget.
 *
 * Positions are not re-assigned (keys are cached after RoPE with their original positions), unlike
 * the pos-shift variant of the StreamingLLM code.
 */
export class WindowPolicy extends ScorerPolicy<WindowOptions> {
  /** @throws ConfigError when an option is unknown or out of bounds. */
  constructor(options: Partial<WindowOptions> = {}) {
    // Nothing to observe: the choice depends on slot order only.
    super({ name: 'window', needs: [], schema: windowSchema }, options);
  }

  /** Sinks and the recent window fill the whole budget. */
  protected override protect<T>(ctx: PolicyContext<T>): Protection {
    return sinkWindow(this.options.sink, ctx.budget);
  }

  /** Never called: {@link protect} leaves nothing to rank. */
  protected score<T>(_layer: LayerCache<T>): T {
    throw new ShapeError('window: no slot is chosen by score', { field: 'scores' });
  }
}

/** Registry definition of {@link WindowPolicy}. */
export const windowPolicy = definePolicy<WindowOptions>({
  name: 'window',
  description: 'Keep the first `sink` tokens plus the most recent ones that fill the budget and drop the middle (StreamingLLM, Xiao et al., ICLR 2024).',
  schema: windowSchema,
  create: (options) => new WindowPolicy(options),
});
