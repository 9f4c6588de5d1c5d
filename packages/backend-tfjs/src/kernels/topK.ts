import * as tf from '@tensorflow/tfjs-core';
import { dimsOf, expectInt } from '../validate.js';

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
 * The winners are then sorted by index with a second TopK over their negated indices.
 * @throws ShapeError unless `0 <= from <= to <= length` and `0 <= k <= to - from` are integers.
 */
export function topK(scores: tf.Tensor, k: number, from: number, to: number): tf.Tensor {
  const [H, L] = dimsOf(scores, 'topK scores', 'float32', 2) as [number, number];
  expectInt(from, 'topK from', 0, L);
  expectInt(to, 'topK to', from, L);
  expectInt(k, 'topK k (at most to - from)', 0, to - from);
  const m = to - from;
  return tf.tidy(() => {
    if (k === 0 || H === 0) return tf.zeros([H, k], 'int32');
    if (k === m) return tf.tile(tf.reshape(tf.range(from, to, 1, 'int32'), [1, m]), [H, 1]);
    const window = tf.slice(scores, [0, from], [H, m]);
    const ranked = tf.clipByValue(tf.where(tf.isNaN(window), tf.fill([H, m], -Infinity), window), -FLT_MAX, FLT_MAX);
    const winners = tf.topk(ranked, k, true).indices;
    const ascending = tf.neg(tf.topk(tf.neg(winners), k, true).values);
    return from === 0 ? ascending : tf.add(ascending, tf.scalar(from, 'int32'));
  });
}
