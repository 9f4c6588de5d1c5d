import { DTypeError } from '../errors.js';
import { defineKernel } from '../kernel-definition.js';
import type { DType, HostTensor } from '../tensor.js';

/** A validated {@link KVKernels.allFinite} call. */
export interface AllFiniteCall<T = unknown> {
  /** The tensor, of any shape. */
  readonly tensor: T;
  /** Its dtype: an int32 tensor is finite without looking. */
  readonly dtype: DType;
  /** Its number of elements. */
  readonly size: number;
}

/**
 * True when every element of `tensor` is finite. int32 tensors always are.
 *
 * Branch-free scan: `x * 0` is 0 for finite `x` and NaN for NaN or an infinity, and NaN survives
 * addition, so one comparison at the end answers for the whole array.
 * @throws ShapeError when `tensor` is not a live tensor of the backend.
 */
export const allFiniteKernel = defineKernel({
  name: 'allFinite',
  description: 'True when every element is finite (no NaN, no infinity); int32 tensors always are.',
  validate(check, tensor: unknown): AllFiniteCall {
    const m = check.meta(tensor, 'allFinite tensor');
    if (m.dtype !== 'float32' && m.dtype !== 'int32') throw new DTypeError('allFinite tensor', String(m.dtype), ['float32', 'int32']);
    return { tensor, dtype: m.dtype, size: m.shape.reduce((a, b) => a * b, 1) };
  },
  reference({ tensor }: AllFiniteCall<HostTensor>): boolean | Promise<boolean> {
    const d = tensor.data;
    if (d instanceof Int32Array) return true;
    let acc = 0;
    for (let i = 0; i < d.length; i++) acc += d[i]! * 0;
    return acc === 0;
  },
});
