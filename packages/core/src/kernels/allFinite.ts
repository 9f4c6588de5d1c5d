import { DTypeError } from '../errors.js';
import { defineKernel } from '../kernel-definition.js';
import { finiteBoundScale } from '../kernels.js';
import type { DType, HostTensor } from '../tensor.js';

/** A validated {@link KVKernels.allFinite} call. */
export interface AllFiniteCall<T = unknown> {
  /** The tensor, of any shape. */
  readonly tensor: T;
  /** Its dtype: an int32 tensor is finite without looking. */
  readonly dtype: DType;
  /** Its number of elements. */
  readonly size: number;
  /**
   * With a `bound`: the factor `2^(128 - log2 bound)` (see {@link finiteBoundScale}) by which float32
   * elements are multiplied before the test, so that exactly those of magnitude `>= bound` overflow to
   * infinity. Undefined without a bound.
   */
  readonly scale: number | undefined;
}

/**
 * True when every element of `tensor` is finite (and, with `bound`, smaller than `bound` in magnitude).
 * int32 tensors always are.
 *
 * Branch-free scan: `x * 0` is 0 for finite `x` and NaN for NaN or an infinity, and NaN survives
 * addition, so one comparison at the end answers for the whole array. With a bound, the elements are
 * scaled and rounded to float32 first (`Math.fround`), which overflows to infinity exactly where
 * `|x| >= bound`, as on the float32 backends.
 * @throws ShapeError when `tensor` is not a live tensor of the backend; DTypeError for dtypes other than
 *   float32/int32; ConfigError when `bound` is not a power of two from 2 to 2^127.
 */
export const allFiniteKernel = defineKernel({
  name: 'allFinite',
  description: 'True when every element is finite (no NaN, no infinity) and, with a bound, smaller than it in magnitude; int32 tensors always are.',
  validate(check, tensor: unknown, bound?: number): AllFiniteCall {
    const m = check.meta(tensor, 'allFinite tensor');
    if (m.dtype !== 'float32' && m.dtype !== 'int32') throw new DTypeError('allFinite tensor', String(m.dtype), ['float32', 'int32']);
    const scale = bound === undefined ? undefined : finiteBoundScale(bound);
    return { tensor, dtype: m.dtype, size: m.shape.reduce((a, b) => a * b, 1), scale };
  },
  reference({ tensor, scale }: AllFiniteCall<HostTensor>): boolean | Promise<boolean> {
    const d = tensor.data;
    if (d instanceof Int32Array) return true;
    let acc = 0;
    if (scale === undefined) for (let i = 0; i < d.length; i++) acc += d[i]! * 0;
    else for (let i = 0; i < d.length; i++) acc += Math.fround(d[i]! * scale) * 0;
    return acc === 0;
  },
});
