import type { HostTensor } from '@kvfold/core';
import { ShapeError, finiteBoundScale } from '@kvfold/core';

/**
 * True when every element of `tensor` is finite (and, with `bound`, smaller than `bound` in magnitude).
 * int32 tensors always are.
 *
 * Branch-free scan: `x * 0` is 0 for finite `x` and NaN for NaN or an infinity, and NaN survives
 * addition, so one comparison at the end answers for the whole array. With a bound, the elements are
 * scaled by `2^(128 - log2 bound)` and rounded to float32 first (`Math.fround`), which overflows to
 * infinity exactly where `|x| >= bound`, as on the float32 backends.
 * @throws ShapeError when `tensor` is not a host tensor; ConfigError when `bound` is not a power of two in [2, 2^127].
 */
export function allFinite(tensor: HostTensor, bound?: number): boolean {
  if (typeof tensor !== 'object' || tensor === null || tensor.data === undefined) {
    throw new ShapeError('allFinite tensor is not a reference-backend tensor (expected { dtype, shape, data })', { field: 'tensor' });
  }
  const d = tensor.data;
  const scale = bound === undefined ? undefined : finiteBoundScale(bound);
  if (d instanceof Int32Array) return true;
  let acc = 0;
  if (scale === undefined) for (let i = 0; i < d.length; i++) acc += d[i]! * 0;
  else for (let i = 0; i < d.length; i++) acc += Math.fround(d[i]! * scale) * 0;
  return acc === 0;
}
