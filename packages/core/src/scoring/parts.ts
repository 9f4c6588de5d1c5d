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
 * the update H2O, CaM and KVMerger share. The new `scores` tensor is owned by the result. A decode step
 * with `ctx.inPlace` on a backend that can edit tensors (`KVKernels.editView`) adds into `layer.scores` itself and returns `layer`.
 * @throws MissingObservationError when `observed.attention` is missing.
 */
export function accumulateAttention<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>, policy: string): LayerCache<T> {
  const k = ctx.kernels;
  const attention = requireObservation(observed, 'attention', policy);
  const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  // Anything unusual (shapes, dtypes) goes to the kernel, which refuses it with its typed error.
  const inPlace = ctx.inPlace === true && ctx.step > 0 && k.editView && k.dtypeOf(attention) === 'float32' && k.dtypeOf(layer.scores) === 'float32' && same(k.shapeOf(attention), k.shapeOf(layer.scores));
  const sv = inPlace ? k.editView!(layer.scores) : undefined;
  const av = sv ? k.editView!(attention, false) : undefined;
  if (sv && av) {
    // A decode step on a cache handed over (see PolicyContext.inPlace): add into its scores, no new tensor
    // and no kernel launch (one ORT session run on onnx). float32 sums, as the accumulate kernel's.
    const s = sv.data as Float32Array;
    const a = av.data as Float32Array;
    // Unrolled by four, the length read once: about 2.5x faster in V8 than the plain loop re-reading
    // s.length (issue 12, target 4); each element is the same float32 sum.
    const n = s.length;
    const n4 = n - (n & 3);
    let i = 0;
    for (; i < n4; i += 4) {
      s[i] = s[i]! + a[i]!;
      s[i + 1] = s[i + 1]! + a[i + 1]!;
      s[i + 2] = s[i + 2]! + a[i + 2]!;
      s[i + 3] = s[i + 3]! + a[i + 3]!;
    }
    for (; i < n; i++) s[i] = s[i]! + a[i]!;
    return layer;
  }
  return { ...layer, scores: k.accumulate(layer.scores, attention) };
}
