import type { LayerCache } from '../kernels.js';
import { SPECIFICATION_VERSION, type KVCachePolicy, type Observation, type PolicyContext } from '../policy.js';

/** The budget of one layer, from the uniform budget every layer would get and the layer's place in the model. */
export type LayerBudget = (budget: number, layerIndex: number, layerCount: number, promptLength: number) => number;

/**
 * A wrapper (kvpress's `PerLayerCompressionPress`): runs `inner` with a budget per layer computed by
 * `schedule` from the uniform budget, clamped to `[1, promptLength]`, at prefill and at every decode step.
 * Everything else passes through; the wrapper keeps no state.
 */
export class PerLayerBudgetPolicy implements KVCachePolicy {
  /** Specification version implemented. */
  readonly specificationVersion = SPECIFICATION_VERSION;
  /** What `inner` needs. */
  readonly needs: KVCachePolicy['needs'];

  /**
   * Wrap `inner`.
   * @param name registry name of the composed policy (e.g. `pyramidkv`).
   * @param inner the policy that compresses each layer.
   * @param schedule each layer's budget.
   */
  constructor(
    readonly name: string,
    readonly inner: KVCachePolicy,
    readonly schedule: LayerBudget,
  ) {
    this.needs = inner.needs;
  }

  /** The context of `ctx`'s layer with its scheduled budget. */
  private contextFor<T>(ctx: PolicyContext<T>): PolicyContext<T> {
    const budget = Math.max(1, Math.min(ctx.promptLength, Math.round(this.schedule(ctx.budget, ctx.layerIndex, ctx.layerCount, ctx.promptLength))));
    return budget === ctx.budget ? ctx : { ...ctx, budget };
  }

  /** `inner.prefill` with the layer's budget. */
  prefill<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    return this.inner.prefill(layer, observed, this.contextFor(ctx));
  }

  /** `inner.step` with the layer's budget. */
  step<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    return this.inner.step(layer, observed, this.contextFor(ctx));
  }
}

/**
 * PyramidKV's schedule (Cai et al., 2024, arXiv 2406.02069; kvpress `PyramidKVPress`): budgets fall linearly
 * from the bottom layer to the top one and average to the uniform budget. With `window` the observation
 * window and `B` the uniform budget: `min = B / beta`, `max = 2B - min` (capped at `promptLength - window`,
 * which raises `min` to keep the mean), layer `l` keeps `max - l (max - min) / (layers - 1)`. Falls back to
 * the uniform budget when the pyramid does not fit (`min < window`, or a single layer).
 */
export function pyramidSchedule(beta: number, window: number): LayerBudget {
  return (budget, layerIndex, layerCount, promptLength) => {
    let min = budget / beta;
    let max = 2 * budget - min;
    if (max >= promptLength - window) {
      max = promptLength - window;
      min = 2 * budget - max;
    }
    if (layerCount < 2 || !(promptLength >= max && max >= min && min >= window)) return budget;
    return max - (layerIndex * (max - min)) / (layerCount - 1);
  };
}
