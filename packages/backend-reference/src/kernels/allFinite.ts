import type { HostTensor } from '@kvfold/core';
import { ShapeError } from '@kvfold/core';

/**
 * True when every element of `tensor` is finite. int32 tensors always are.
 *
 * Branch-free scan: `x * 0` is 0 for finite `x` and NaN for NaN or an infinity, and NaN survives
 * addition, so one comparison at the end answers for the whole array.
 * @throws ShapeError when `tensor` is not a host tensor.
 */
export function allFinite(tensor: HostTensor): boolean {
  if (typeof tensor !== 'object' || tensor === null || tensor.data === undefined) {
    throw new ShapeError('allFinite tensor is not a reference-backend tensor (expected { dtype, shape, data })', { field: 'tensor' });
  }
  const d = tensor.data;
  if (d instanceof Int32Array) return true;
  let acc = 0;
  for (let i = 0; i < d.length; i++) acc += d[i]! * 0;
  return acc === 0;
}
