import * as tf from '@tensorflow/tfjs-core';
import type { AdjacentCosineCall, KernelImplementation } from '@kvfold/core';
import { column, rowRange, rowScales, takeRows } from '../ops.js';

/**
 * Cosine similarity of each key with the next one, float32 `[kvHeads, length - 1]` (`[kvHeads, 0]` when
 * length <= 1); 0 when either norm is 0; clamped to [-1, 1] so rounding never reports more than 1.
 *
 * Heads are flattened into one run of `kvHeads * length` keys: the pairs are two contiguous row ranges
 * shifted by one key (a non-contiguous 3-D slice costs about 600 ns per element on the cpu engine),
 * squared norms are computed once per key, and the pairs that straddle two heads are dropped at the
 * end with one small take.
 *
 * Each key is first scaled by a power of two that brings its largest element near 1 (exact, so the cosine
 * is unchanged): float32 squares of keys above about 1.8e19 would overflow, and of keys below about
 * 1e-19 underflow, where the reference's float64 sums do neither.
 */
export const adjacentCosine: KernelImplementation<AdjacentCosineCall<tf.Tensor>, tf.Tensor> = { run: cosine };

function cosine({ keys, shape }: AdjacentCosineCall<tf.Tensor>): tf.Tensor {
  const [H, L, D] = shape;
  const M = Math.max(L - 1, 0);
  return tf.tidy(() => {
    if (H === 0 || M === 0 || D === 0) return tf.zeros([H, M], 'float32');
    const N = H * L;
    const flat = tf.reshape(keys, [N, D]);
    const rows = tf.mul(flat, column(rowScales(flat), D));
    const dot = tf.sum(tf.mul(rowRange(rows, 0, N - 1), rowRange(rows, 1, N - 1)), -1);
    const norm = tf.sqrt(tf.sum(tf.square(rows), -1));
    const den = tf.mul(rowRange(norm, 0, N - 1), rowRange(norm, 1, N - 1));
    const positive = tf.greater(den, 0);
    // The unused branch divides by 0; substituting 1 keeps it finite (where() evaluates both sides).
    const cos = tf.div(dot, tf.where(positive, den, tf.onesLike(den)));
    const pairs = tf.where(positive, tf.clipByValue(cos, -1, 1), tf.zerosLike(cos));
    if (H === 1) return tf.reshape(pairs, [1, M]);
    // Output pair j of head h is flat pair h * L + j: skip the one pair per head boundary.
    const out = tf.range(0, H * M, 1, 'int32');
    const index = tf.add(out, tf.floorDiv(out, tf.scalar(M, 'int32')));
    return tf.reshape(takeRows(pairs, index), [H, M]);
  });
}
