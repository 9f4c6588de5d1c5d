import * as tf from '@tensorflow/tfjs-core';
import type { GatherCall, KernelImplementation, LayerCache, ScreenResult } from '@kvfold/core';
import { flatIndex, headRowIndex, headStarts, rowGatherFast, shiftDown, takeDistinctRows, takeRows } from '../ops.js';

/**
 * Gather every field of `layer` at int32 `index [kvHeads, k]` (per head; duplicates allowed, order kept).
 * The screen checks the index range and learns, in the same scalar download, whether each head's indices
 * are strictly ascending (as the policies' keep lists are), which allows the faster distinct-row take.
 */
export const gather: KernelImplementation<GatherCall<tf.Tensor>, LayerCache<tf.Tensor>, boolean> = {
  screen: screenIndex,
  run: ({ layer, index }, ascending = false) => tf.tidy(() => gatherRows(layer, index, ascending)),
};

/** Every entry in `[0, L)`, and whether each head's indices ascend strictly (the note): one scalar download. */
function screenIndex({ index, dims, k }: GatherCall<tf.Tensor>): ScreenResult<boolean> {
  const { heads: H, length: L } = dims;
  if (H * k === 0) return { valid: true, note: true };
  const summary = tf.tidy(() => {
    const bad = tf.logicalOr(tf.less(tf.min(index), tf.scalar(0, 'int32')), tf.greater(tf.max(index), tf.scalar(L - 1, 'int32')));
    const flat = tf.reshape(index, [H * k]);
    const descending = tf.any(tf.logicalAnd(tf.logicalNot(headStarts(H, k)), tf.lessEqual(flat, shiftDown(flat, -1))));
    return tf.stack([tf.cast(bad, 'int32'), tf.cast(descending, 'int32')]);
  });
  const [bad, descending] = summary.dataSync() as unknown as [number, number];
  summary.dispose();
  return { valid: bad === 0, note: descending === 0 };
}

/** A layer of `M` zero slots per head (what an empty selection or plan produces). Call inside `tf.tidy`. */
export function emptyLayer(H: number, M: number, D: number): LayerFields {
  const rows = (dtype: 'float32' | 'int32', ...rest: number[]) => tf.zeros([H, M, ...rest], dtype);
  return { keys: rows('float32', D), values: rows('float32', D), positions: rows('int32'), counts: rows('int32'), scores: rows('float32') };
}

/** The five fields of a layer as a plain object type, which `tf.tidy` accepts as a result (an interface is not a TensorContainer). */
export type LayerFields = { keys: tf.Tensor; values: tf.Tensor; positions: tf.Tensor; counts: tf.Tensor; scores: tf.Tensor };

/**
 * Gather without validation, for kernels that already checked `index` (in range, `[H, k]`; `distinct`
 * when no head repeats an index, which allows {@link takeDistinctRows} on cpu). On wasm and tensorflow each
 * field is one `gatherND` with `(head, slot)` index pairs ({@link headRowIndex}); on cpu heads are flattened
 * into rows (`index + h * length`) and each field is one row take of `[H * length, ...]` (wasm 4.22's
 * `gather` with `batchDims = 1` returns wrong rows for every head after the first). Call inside `tf.tidy`.
 */
export function gatherRows(layer: LayerCache<tf.Tensor>, index: tf.Tensor, distinct = false): LayerFields {
  const [H, L, D] = layer.keys.shape as [number, number, number];
  const k = index.shape[1]!;
  if (H === 0 || k === 0 || L === 0) return emptyLayer(H, k, D);
  if (rowGatherFast()) {
    // One gatherND per field from [H, L, ...] straight into [H, k, ...]: no flat views, whose bytes tfjs
    // counts again (two views of the input and two of the output made the peak 4x the output).
    const at = headRowIndex(index);
    const take = (x: tf.Tensor): tf.Tensor => tf.gatherND(x, at);
    return { keys: take(layer.keys), values: take(layer.values), positions: take(layer.positions), counts: take(layer.counts), scores: take(layer.scores) };
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
