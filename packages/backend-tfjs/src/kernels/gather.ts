import * as tf from '@tensorflow/tfjs-core';
import type { LayerCache } from '@kvfold/core';
import { dimsOf, expectRange, expectShape, flatIndex, gatherFlat, layerDims } from '../validate.js';

/**
 * Gather every field of `layer` at int32 `index [kvHeads, k]` (per head; duplicates allowed, order kept).
 * @throws ShapeError when `index` has another head count or an entry outside `[0, length)`.
 */
export function gather(layer: LayerCache<tf.Tensor>, index: tf.Tensor): LayerCache<tf.Tensor> {
  const { heads: H, length: L } = layerDims(layer, 'gather');
  const k = dimsOf(index, 'gather index', 'int32', 2)[1]!;
  expectShape(index.shape, [H, k], 'gather index');
  expectRange(index, 0, L - 1, 'gather index');
  return tf.tidy(() => gatherRows(layer, index));
}

/**
 * Gather without validation, for kernels that already checked `index` (in range, `[H, k]`). Per-head
 * gathers are one `gather(axis 1, batchDims 1)` per field. Call inside `tf.tidy`.
 */
export function gatherRows(layer: LayerCache<tf.Tensor>, index: tf.Tensor): { keys: tf.Tensor; values: tf.Tensor; positions: tf.Tensor; counts: tf.Tensor; scores: tf.Tensor } {
  const [H, L, D] = layer.keys.shape as [number, number, number];
  const k = index.shape[1]!;
  if (H === 0 || k === 0 || L === 0) {
    // tfjs gathers reject empty operands on some engines; the result is empty anyway.
    return {
      keys: tf.zeros([H, k, D], 'float32'),
      values: tf.zeros([H, k, D], 'float32'),
      positions: tf.zeros([H, k], 'int32'),
      counts: tf.zeros([H, k], 'int32'),
      scores: tf.zeros([H, k], 'float32'),
    };
  }
  const flat = flatIndex(index, L);
  return {
    keys: gatherFlat(layer.keys, flat),
    values: gatherFlat(layer.values, flat),
    positions: gatherFlat(layer.positions, flat),
    counts: gatherFlat(layer.counts, flat),
    scores: gatherFlat(layer.scores, flat),
  };
}
