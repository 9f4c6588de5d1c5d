import * as tf from '@tensorflow/tfjs-core';
import { DTypeError, ShapeError, finiteBoundScale } from '@kvfold/core';
import { isTensor } from '../validate.js';

/**
 * True when every element of `tensor` is finite (and, with `bound`, smaller than `bound` in magnitude);
 * int32 tensors always are.
 *
 * `x * 0` is 0 for every finite `x` and NaN for an infinity or NaN, so the sum of `x * 0` is exactly 0
 * unless some element is not finite: two passes over the tensor (a scalar multiply and a sum) and one
 * scalar download, instead of isNaN, isInf, a logical or and a reduction (wasm's logical ops alone cost
 * about 30 ns per element). With a bound, `x` is first multiplied by `2^(128 - log2 bound)`, which
 * overflows to infinity exactly where `|x| >= bound`.
 * @throws ShapeError when `tensor` is not a live tf.Tensor; DTypeError for dtypes other than float32/int32;
 *   ConfigError when `bound` is not a power of two in [2, 2^127].
 */
export async function allFinite(tensor: tf.Tensor, bound?: number): Promise<boolean> {
  if (!isTensor(tensor)) throw new ShapeError('allFinite tensor is not a tfjs-backend tensor (tf.Tensor)', { field: 'tensor' });
  if (tensor.isDisposed) throw new ShapeError('allFinite tensor was disposed and can no longer be used', { field: 'tensor' });
  const scale = bound === undefined ? undefined : finiteBoundScale(bound);
  if (tensor.dtype === 'int32') return true;
  if (tensor.dtype !== 'float32') throw new DTypeError('allFinite tensor', tensor.dtype, ['float32', 'int32']);
  if (tensor.size === 0) return true;
  const probe = tf.tidy(() => tf.sum(tf.mul(scale === undefined ? tensor : tf.mul(tensor, tf.scalar(scale)), tf.scalar(0))));
  try {
    return (await probe.data())[0] === 0;
  } finally {
    probe.dispose();
  }
}
