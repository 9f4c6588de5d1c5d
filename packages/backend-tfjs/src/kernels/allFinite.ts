import * as tf from '@tensorflow/tfjs-core';
import { DTypeError, ShapeError } from '@kvfold/core';
import { isTensor } from '../validate.js';

/**
 * True when every element of `tensor` is finite; int32 tensors always are. One reduction on the
 * backend, then a single boolean is downloaded.
 * @throws ShapeError when `tensor` is not a live tf.Tensor; DTypeError for dtypes other than float32/int32.
 */
export async function allFinite(tensor: tf.Tensor): Promise<boolean> {
  if (!isTensor(tensor)) throw new ShapeError('allFinite tensor is not a tfjs-backend tensor (tf.Tensor)', { field: 'tensor' });
  if (tensor.isDisposed) throw new ShapeError('allFinite tensor was disposed and can no longer be used', { field: 'tensor' });
  if (tensor.dtype === 'int32') return true;
  if (tensor.dtype !== 'float32') throw new DTypeError('allFinite tensor', tensor.dtype, ['float32', 'int32']);
  if (tensor.size === 0) return true;
  // isNaN and isInf rather than isFinite: both exist on every engine (wasm, cpu, tensorflow).
  const bad = tf.tidy(() => tf.any(tf.logicalOr(tf.isNaN(tensor), tf.isInf(tensor))));
  try {
    return (await bad.data())[0] === 0;
  } finally {
    bad.dispose();
  }
}
