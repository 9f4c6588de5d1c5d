import * as tf from '@tensorflow/tfjs-core';
import type { LayerCache } from '@kvfold/core';
import { dimsOf, expectShape, layerDims } from '../validate.js';

/**
 * Append `n` new tokens to every head: keys and values `[kvHeads, n, headDim]`, positions int32
 * `[kvHeads, n]`; new slots get count 1 and score 0. Every field is a fresh concatenation, so the
 * result shares no tensor with `layer`.
 * @throws ShapeError / DTypeError when the new tensors disagree with the layer or with each other.
 */
export function append(layer: LayerCache<tf.Tensor>, keys: tf.Tensor, values: tf.Tensor, positions: tf.Tensor): LayerCache<tf.Tensor> {
  const { heads: H, headDim: D } = layerDims(layer, 'append');
  const n = dimsOf(keys, 'append keys', 'float32', 3)[1]!;
  expectShape(keys.shape, [H, n, D], 'append keys');
  expectShape(dimsOf(values, 'append values', 'float32', 3), [H, n, D], 'append values');
  expectShape(dimsOf(positions, 'append positions', 'int32', 2), [H, n], 'append positions');
  return tf.tidy(() => ({
    keys: tf.concat([layer.keys, keys], 1),
    values: tf.concat([layer.values, values], 1),
    positions: tf.concat([layer.positions, positions], 1),
    counts: tf.concat([layer.counts, tf.ones([H, n], 'int32')], 1),
    scores: tf.concat([layer.scores, tf.zeros([H, n], 'float32')], 1),
  }));
}
