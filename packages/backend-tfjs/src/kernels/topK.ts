import * as tf from '@tensorflow/tfjs-core';
import type { KernelImplementation, TopKCall } from '@kvfold/core';

/** Largest finite float32. */
const FLT_MAX = 3.4028234663852886e38;

/**
 * Indices of the `k` highest scores of each head among slots `[from, to)`, sorted ascending by slot
 * index, int32 `[kvHeads, k]`. Ties go to the lower slot index; NaN ranks as `-Infinity`.
 *
 * tfjs's own TopK ranks NaN first (wasm and cpu) and, on cpu, orders equal infinities arbitrarily
 * (its comparator subtracts values). Scores are therefore mapped first: NaN to -Infinity, then
 * infinities clamped to +-FLT_MAX, which leaves a strict total order (value, then index) that every
 * engine's TopK respects. The one case this changes: a head holding both an infinity and the
 * exact value +-FLT_MAX ranks the two as tied (lower index first) instead of infinity first.
 * Slots outside the window rank below every clamped score, so TopK runs over the whole row (no slice),
 * and the winners are then sorted by index with a second TopK over their negated indices.
 */
export const topK: KernelImplementation<TopKCall<tf.Tensor>, tf.Tensor> = { run: select };

function select({ scores, k, from, to, heads: H, length: L }: TopKCall<tf.Tensor>): tf.Tensor {
  const m = to - from;
  return tf.tidy(() => {
    if (k === 0 || H === 0) return tf.zeros([H, k], 'int32');
    if (k === m) return tf.tile(tf.reshape(tf.range(from, to, 1, 'int32'), [1, m]), [H, 1]);
    const ranked = tf.clipByValue(tf.where(tf.isNaN(scores), tf.fill([H, L], -Infinity), scores), -FLT_MAX, FLT_MAX);
    // Slots outside [from, to) get -Infinity, below every (clamped) slot inside, so they never win
    // (k <= to - from). Adding a [length] row stays on every engine's fast path, unlike slicing the
    // window out of [H, length] (element by element on cpu).
    const window = from === 0 && to === L ? ranked : tf.add(ranked, outside(L, from, to));
    const winners = tf.topk(window, k, true).indices;
    return tf.neg(tf.topk(tf.neg(winners), k, true).values);
  });
}

/** float32 `[L]`: 0 inside `[from, to)`, -Infinity outside. */
function outside(L: number, from: number, to: number): tf.Tensor {
  const slot = tf.range(0, L, 1, 'int32');
  const inside = tf.logicalAnd(tf.greaterEqual(slot, tf.scalar(from, 'int32')), tf.less(slot, tf.scalar(to, 'int32')));
  return tf.log(tf.cast(inside, 'float32'));
}
