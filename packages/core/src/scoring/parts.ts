import { MissingObservationError } from '../errors.js';
import type { LayerCache } from '../kernels.js';
import type { JsonSchema, Observation, ObservationNeed, PolicyContext } from '../policy.js';
import type { Protection } from './scorer-policy.js';

/**
 * JSON Schema of a window size given as a share of the budget in `[0, 1)` or a slot count `>= 1`
 * (what {@link resolveShare} resolves): the form of every `recent`/`heavy` option.
 */
export function shareSchema(description: string, fallback: number): JsonSchema {
  return {
    default: fallback,
    description: `${description}: a share of the budget in [0, 1) or an integer slot count >= 1 (clamped to the budget).`,
    oneOf: [
      { type: 'number', minimum: 0, exclusiveMaximum: 1 },
      { type: 'integer', minimum: 1, maximum: 2_147_483_647 },
    ],
  };
}

/**
 * StreamingLLM's protection: the first `sink` slots (clamped to `budget - 1`, so the newest token always
 * fits) and the most recent slots that fill the rest of the budget.
 */
export function sinkWindow(sink: number, budget: number): Protection {
  const s = Math.max(0, Math.min(sink, budget - 1));
  return { sink: s, recent: budget - s };
}

/**
 * The observation `need` a policy declared, or a typed error naming the policy (for policies called
 * without core's guard).
 * @throws MissingObservationError
 */
export function requireObservation<T>(observed: Observation<T>, need: ObservationNeed, policy: string): T {
  const t = observed[need];
  if (t === undefined) throw new MissingObservationError(policy, need);
  return t;
}

/**
 * H2O's score state: the layer with `scores + attention` (every query's attention summed into each slot),
 * the update H2O, CaM and KVMerger share. The new `scores` tensor is owned by the result.
 * @throws MissingObservationError when `observed.attention` is missing.
 */
export function accumulateAttention<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>, policy: string): LayerCache<T> {
  return { ...layer, scores: ctx.kernels.accumulate(layer.scores, requireObservation(observed, 'attention', policy)) };
}
