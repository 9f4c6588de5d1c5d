import * as tf from '@tensorflow/tfjs-core';
import type { KernelImplementation, KeyNormsCall } from '@kvfold/core';
import { column, rowScales } from '../ops.js';

/**
 * L2 norm of each key, float32 `[kvHeads, length]`: each key is scaled by a power of two first
 * ({@link rowScales}), its norm taken, and the scale divided out again (exact), so keys whose squares
 * would overflow or underflow float32 get the reference's float64 norm.
 */
export const keyNorms: KernelImplementation<KeyNormsCall<tf.Tensor>, tf.Tensor> = {
  run: ({ keys, shape: [H, L, D] }) =>
    tf.tidy(() => {
      if (H * L === 0 || D === 0) return tf.zeros([H, L], 'float32');
      const rows = tf.reshape(keys, [H * L, D]);
      const s = rowScales(rows);
      return tf.reshape(tf.div(tf.sqrt(tf.sum(tf.square(tf.mul(rows, column(s, D))), -1)), s), [H, L]);
    }),
};
