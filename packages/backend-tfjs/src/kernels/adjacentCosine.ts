import * as tf from '@tensorflow/tfjs-core';
import type { AdjacentCosineCall, KernelImplementation } from '@kvfold/core';
import { column, indexPairs, rowRange, rowScales, takeRows } from '../ops.js';
import { allOf } from '../screen.js';

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
  if (H > 0 && M > 0 && D > 0 && tf.getBackend() === 'wasm') {
    const fast = unscaledCosine(keys, H, L, D);
    if (fast) return fast;
  }
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

/** Largest block of keys (elements) {@link unscaledCosine} materialises at once. */
const COSINE_BLOCK = 1 << 22;

/** Squared norms at or above this need no scaling: squares too small to be represented weigh under 2^-39 of them. */
const SAFE_SQUARED_NORM = 2 ** -80;

/**
 * The cosines on wasm without the power-of-two scaling, when it is not needed: where every key's squared
 * norm is finite and at least {@link SAFE_SQUARED_NORM}, no square or product overflows and those that
 * underflow weigh nothing at float32 precision, so scaling would not change the result; the scaled
 * program spends its time on per-row maxima (`Max` reduces element by element on wasm, 40 ms at
 * 32 x 4096 x 128 in the profile). Returns undefined otherwise (a zero, tiny or huge key), for the scaled
 * program to run. Heads are done in blocks of
 * {@link COSINE_BLOCK} elements so the scratch stays a few blocks (tfjs counts every flat view too).
 */
function unscaledCosine(keys: tf.Tensor, H: number, L: number, D: number): tf.Tensor | undefined {
  const B = Math.max(1, Math.min(H, Math.floor(COSINE_BLOCK / (L * D))));
  const parts: tf.Tensor[] = [];
  const flags: tf.Tensor[] = [];
  for (let h0 = 0; h0 < H; h0 += B) {
    const b = Math.min(B, H - h0);
    const [cos, ok] = tf.tidy(() => {
      const heads = tf.reshape(tf.range(h0, h0 + b, 1, 'int32'), [b, 1]);
      // This block's keys and each key's successor in its head (the last key pairs with itself; dropped below).
      const own = H === b ? keys : tf.gatherND(keys, heads);
      const j = tf.range(0, b * L, 1, 'float32');
      const next = tf.minimum(tf.add(tf.mod(j, tf.scalar(L)), tf.scalar(1)), tf.scalar(L - 1));
      const succ = tf.gatherND(keys, indexPairs(tf.add(tf.floor(tf.div(j, tf.scalar(L))), tf.scalar(h0)), next, [b, L]));
      const rows = tf.reshape(own, [b * L, D]);
      const squares = tf.square(rows);
      const norm2 = tf.sum(squares, -1);
      squares.dispose();
      const products = tf.mul(rows, tf.reshape(succ, [b * L, D]));
      succ.dispose();
      const dot = tf.sum(products, -1);
      products.dispose();
      const norm = tf.sqrt(norm2);
      const den = tf.mul(norm, tf.gatherND(norm, tf.reshape(tf.cast(tf.add(tf.mul(tf.floor(tf.div(j, tf.scalar(L))), tf.scalar(L)), next), 'int32'), [b * L, 1])));
      const c = tf.clipByValue(tf.div(dot, den), -1, 1);
      // NaN fails both comparisons, so a NaN key is not safe either.
      const safe = tf.all(tf.logicalAnd(tf.greaterEqual(norm2, tf.scalar(SAFE_SQUARED_NORM)), tf.less(norm2, tf.scalar(Infinity))));
      return [tf.slice(tf.reshape(c, [b, L]), [0, 0], [b, L - 1]), safe];
    });
    parts.push(cos);
    flags.push(ok);
  }
  const safe = allOf(flags);
  if (!safe) {
    for (const p of parts) p.dispose();
    return undefined;
  }
  if (parts.length === 1) return parts[0]!;
  const out = tf.concat(parts);
  for (const p of parts) p.dispose();
  return out;
}
