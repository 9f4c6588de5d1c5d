import { defineKernel } from '../kernel-definition.js';
import type { HostTensor } from '../tensor.js';
import { f32 } from './host.js';

/** A validated {@link KVKernels.accumulate} call. */
export interface AccumulateCall<T = unknown> {
  /** float32 `[kvHeads, length]`. */
  readonly scores: T;
  /** float32, the same shape as `scores`. */
  readonly attention: T;
  /** Their shape. */
  readonly shape: readonly number[];
}

/**
 * Element-wise `scores + attention` (H2O's score update), both float32 `[kvHeads, length]`.
 * @throws ShapeError when the shapes differ; DTypeError when either is not float32.
 */
export const accumulateKernel = defineKernel({
  name: 'accumulate',
  description: 'Element-wise scores + attention, both float32 [kvHeads, length] (the H2O score update).',
  validate(check, scores: unknown, attention: unknown): AccumulateCall {
    const shape = check.tensor(scores, 'accumulate scores', 'float32', 2);
    check.shaped(attention, 'accumulate attention', 'float32', shape);
    return { scores, attention, shape };
  },
  reference(c: AccumulateCall<HostTensor>): HostTensor<'float32'> {
    const a = c.scores.data;
    const b = c.attention.data;
    const out = new Float32Array(a.length);
    for (let i = 0; i < a.length; i++) out[i] = a[i]! + b[i]!;
    return f32([...c.shape], out);
  },
});
