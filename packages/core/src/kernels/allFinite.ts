import { DTypeError, ShapeError } from '../errors.js';
import { expectInt } from '../kernel-check.js';
import { defineKernel } from '../kernel-definition.js';
import { finiteBoundScale } from '../kernels.js';
import type { DType, HostTensor } from '../tensor.js';

/** A validated {@link KVKernels.allFinite} call. */
export interface AllFiniteCall<T = unknown> {
  /** The tensor, of any shape. */
  readonly tensor: T;
  /** Its dtype: an int32 tensor is finite without looking. */
  readonly dtype: DType;
  /** Its shape. */
  readonly shape: readonly number[];
  /** Its number of elements. */
  readonly size: number;
  /**
   * With a `bound`: the factor `2^(128 - log2 bound)` (see {@link finiteBoundScale}) by which float32
   * elements are multiplied before the test, so that exactly those of magnitude `>= bound` overflow to
   * infinity. Undefined without a bound.
   */
  readonly scale: number | undefined;
  /**
   * First slot tested along axis 1 (0: the whole tensor). With `from > 0` only slots `from..` of every
   * row of axis 0 are tested: the slots a decode step appended to each head of a `[heads, length, ...]` cache.
   */
  readonly from: number;
}

/**
 * True when every element of `tensor` is finite (and, with `bound`, smaller than `bound` in magnitude),
 * looking only at slots `from..` along axis 1 when `from` is given. int32 tensors always are.
 *
 * Branch-free scan: `x * 0` is 0 for finite `x` and NaN for NaN or an infinity, and NaN survives
 * addition, so one comparison at the end answers for the whole array. With a bound, the elements are
 * scaled and rounded to float32 first (`Math.fround`), which overflows to infinity exactly where
 * `|x| >= bound`, as on the float32 backends.
 * @throws ShapeError when `tensor` is not a live tensor of the backend, or `from` is not an integer slot
 *   of its axis 1; DTypeError for dtypes other than float32/int32; ConfigError when `bound` is not a power
 *   of two from 2 to 2^127.
 */
export const allFiniteKernel = defineKernel({
  name: 'allFinite',
  description: 'True when every element (of slots from.. along axis 1, when given) is finite and, with a bound, smaller than it in magnitude; int32 tensors always are.',
  validate(check, tensor: unknown, bound?: number, from?: number): AllFiniteCall {
    const m = check.meta(tensor, 'allFinite tensor');
    if (m.dtype !== 'float32' && m.dtype !== 'int32') throw new DTypeError('allFinite tensor', String(m.dtype), ['float32', 'int32']);
    const scale = bound === undefined ? undefined : finiteBoundScale(bound);
    if (from !== undefined && from !== 0) {
      if (m.shape.length < 2) throw new ShapeError(`allFinite from needs a tensor of rank 2 or more (slots on axis 1), got shape [${m.shape.join(', ')}]`, { field: 'from', shape: [...m.shape] });
      expectInt(from, 'allFinite from', 0, m.shape[1]!);
    }
    return { tensor, dtype: m.dtype, shape: m.shape, size: m.shape.reduce((a, b) => a * b, 1), scale, from: from ?? 0 };
  },
  reference({ tensor, shape, scale, from }: AllFiniteCall<HostTensor>): boolean | Promise<boolean> {
    const d = tensor.data;
    if (d instanceof Int32Array) return true;
    // Rows of axis 0, each `length` slots of `inner` elements; only slots from.. are read.
    const rows = from === 0 ? 1 : shape[0]!;
    const row = d.length / Math.max(rows, 1);
    const skip = from === 0 ? 0 : from * (row / Math.max(shape[1]!, 1));
    let acc = 0;
    for (let r = 0; r < rows; r++) {
      const end = (r + 1) * row;
      if (scale === undefined) for (let i = r * row + skip; i < end; i++) acc += d[i]! * 0;
      else for (let i = r * row + skip; i < end; i++) acc += Math.fround(d[i]! * scale) * 0;
    }
    return acc === 0;
  },
});
