import * as tf from '@tensorflow/tfjs-core';
import { ShapeError, type LayerCache } from '@kvfold/core';
import { flatIndex, headStarts, shiftDown, takeDistinctRows, takeRows } from '../ops.js';
import { dimsOf, expectShape, hostRange, layerDims } from '../validate.js';

/**
 * Gather every field of `layer` at int32 `index [kvHeads, k]` (per head; duplicates allowed, order kept).
 * @throws ShapeError when `index` has another head count or an entry outside `[0, length)`.
 */
export function gather(layer: LayerCache<tf.Tensor>, index: tf.Tensor): LayerCache<tf.Tensor> {
  const { heads: H, length: L } = layerDims(layer, 'gather');
  const k = dimsOf(index, 'gather index', 'int32', 2)[1]!;
  expectShape(index.shape, [H, k], 'gather index');
  const ascending = checkIndex(index, H, k, L);
  return tf.tidy(() => gatherRows(layer, index, ascending));
}

/**
 * Check that every entry lies in `[0, L)` (naming the first that does not) and report whether each
 * head's indices are strictly ascending (as the policies' keep lists are): one scalar download.
 */
function checkIndex(index: tf.Tensor, H: number, k: number, L: number): boolean {
  if (H * k === 0) return true;
  const summary = tf.tidy(() => {
    const bad = tf.logicalOr(tf.less(tf.min(index), tf.scalar(0, 'int32')), tf.greater(tf.max(index), tf.scalar(L - 1, 'int32')));
    const flat = tf.reshape(index, [H * k]);
    const descending = tf.any(tf.logicalAnd(tf.logicalNot(headStarts(H, k)), tf.lessEqual(flat, shiftDown(flat, -1))));
    return tf.stack([tf.cast(bad, 'int32'), tf.cast(descending, 'int32')]);
  });
  const [bad, descending] = summary.dataSync() as unknown as [number, number];
  summary.dispose();
  if (bad !== 0) {
    hostRange(index.dataSync() as Int32Array, k, 0, L - 1, 'gather index');
    throw new ShapeError('gather index is invalid', { field: 'gather index' });
  }
  return descending === 0;
}

/** The five fields of a layer as a plain object type, which `tf.tidy` accepts as a result (an interface is not a TensorContainer). */
export type LayerFields = { keys: tf.Tensor; values: tf.Tensor; positions: tf.Tensor; counts: tf.Tensor; scores: tf.Tensor };

/**
 * Gather without validation, for kernels that already checked `index` (in range, `[H, k]`; `distinct`
 * when no head repeats an index, which allows {@link takeDistinctRows}). Heads are
 * flattened into rows (`index + h * length`), so each field is one row take of `[H * length, ...]`
 * (wasm 4.22's `gather` with `batchDims = 1` returns wrong rows for every head after the first). Call inside `tf.tidy`.
 */
export function gatherRows(layer: LayerCache<tf.Tensor>, index: tf.Tensor, distinct = false): LayerFields {
  const [H, L, D] = layer.keys.shape as [number, number, number];
  const k = index.shape[1]!;
  if (H === 0 || k === 0 || L === 0) {
    return {
      keys: tf.zeros([H, k, D], 'float32'),
      values: tf.zeros([H, k, D], 'float32'),
      positions: tf.zeros([H, k], 'int32'),
      counts: tf.zeros([H, k], 'int32'),
      scores: tf.zeros([H, k], 'float32'),
    };
  }
  const flat = flatIndex(index, L);
  const take = distinct ? takeDistinctRows : takeRows;
  const rows = (x: tf.Tensor, rest: number[]): tf.Tensor => tf.reshape(take(tf.reshape(x, [H * L, ...rest]), flat), [H, k, ...rest]);
  return {
    keys: rows(layer.keys, [D]),
    values: rows(layer.values, [D]),
    positions: rows(layer.positions, []),
    counts: rows(layer.counts, []),
    scores: rows(layer.scores, []),
  };
}
