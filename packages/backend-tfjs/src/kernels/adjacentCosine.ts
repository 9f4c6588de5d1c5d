import * as tf from '@tensorflow/tfjs-core';
import { dimsOf } from '../validate.js';

/**
 * Cosine similarity of each key with the next one, float32 `[kvHeads, length - 1]` (`[kvHeads, 0]` when
 * length <= 1); 0 when either norm is 0; clamped to [-1, 1] so rounding never reports more than 1.
 * Squared norms are computed once per key and shared by both pairs the key belongs to.
 * @throws DTypeError / ShapeError when `keys` is not float32 `[kvHeads, length, headDim]`.
 */
export function adjacentCosine(keys: tf.Tensor): tf.Tensor {
  const [H, L, D] = dimsOf(keys, 'adjacentCosine keys', 'float32', 3) as [number, number, number];
  const M = Math.max(L - 1, 0);
  return tf.tidy(() => {
    if (H === 0 || M === 0 || D === 0) return tf.zeros([H, M], 'float32');
    const a = tf.slice(keys, [0, 0, 0], [H, M, D]);
    const b = tf.slice(keys, [0, 1, 0], [H, M, D]);
    const dot = tf.sum(tf.mul(a, b), -1);
    const norm = tf.sqrt(tf.sum(tf.square(keys), -1));
    const den = tf.mul(tf.slice(norm, [0, 0], [H, M]), tf.slice(norm, [0, 1], [H, M]));
    const positive = tf.greater(den, 0);
    // The unused branch divides by 0; substituting 1 keeps it finite (where() evaluates both sides).
    const cos = tf.div(dot, tf.where(positive, den, tf.onesLike(den)));
    return tf.where(positive, tf.clipByValue(cos, -1, 1), tf.zerosLike(cos));
  });
}
