import * as tf from '@tensorflow/tfjs-core';
import { dimsOf, expectShape } from '../validate.js';

/**
 * Element-wise `scores + attention` (H2O's score update), both float32 `[kvHeads, length]`.
 * @throws ShapeError when the shapes differ; DTypeError when either is not float32.
 */
export function accumulate(scores: tf.Tensor, attention: tf.Tensor): tf.Tensor {
  const shape = dimsOf(scores, 'accumulate scores', 'float32', 2);
  expectShape(dimsOf(attention, 'accumulate attention', 'float32', 2), shape, 'accumulate attention');
  return tf.add(scores, attention);
}
