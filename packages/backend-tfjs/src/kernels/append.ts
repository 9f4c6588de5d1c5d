import * as tf from '@tensorflow/tfjs-core';
import type { AppendCall, KernelImplementation, LayerCache } from '@kvfold/core';

/**
 * Append `n` new tokens to every head: keys and values `[kvHeads, n, headDim]`, positions int32
 * `[kvHeads, n]`; new slots get count 1 and score 0. Every field is a fresh concatenation, so the
 * result shares no tensor with `layer`.
 */
export const append: KernelImplementation<AppendCall<tf.Tensor>, LayerCache<tf.Tensor>> = { run: concat };

function concat({ layer, keys, values, positions, dims, n }: AppendCall<tf.Tensor>): LayerCache<tf.Tensor> {
  const H = dims.heads;
  return tf.tidy(() => ({
    keys: tf.concat([layer.keys, keys], 1),
    values: tf.concat([layer.values, values], 1),
    positions: tf.concat([layer.positions, positions], 1),
    counts: tf.concat([layer.counts, tf.ones([H, n], 'int32')], 1),
    scores: tf.concat([layer.scores, tf.zeros([H, n], 'float32')], 1),
  }));
}
