import * as tf from '@tensorflow/tfjs-core';
import type { KernelImplementation, KeyNormsCall } from '@kvfold/core';

/** L2 norm of each key, float32 `[kvHeads, length]`: one reduction over the head dimension. */
export const keyNorms: KernelImplementation<KeyNormsCall<tf.Tensor>, tf.Tensor> = {
  run: ({ keys, shape: [H, L, D] }) => tf.tidy(() => (D === 0 ? tf.zeros([H, L], 'float32') : tf.sqrt(tf.sum(tf.square(keys), -1)))),
};
