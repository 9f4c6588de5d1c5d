import * as tf from '@tensorflow/tfjs-core';
import { ShapeError, type GroupReduction, type LayerCache, type ObserveOptions, type ObservedAttention } from '@kvfold/core';
import { sumAxis } from '../sum.js';
import { badOption, checkContents, dimsOf, expectShape, layerDims } from '../validate.js';

const REDUCTIONS: readonly GroupReduction[] = ['mean', 'max', 'sum'];

/**
 * Largest attention-logits block (elements, float32) one chunk materialises: 4 Mi elements = 16 MiB.
 * A prefill of 8k tokens with 32 query heads would otherwise need `32 * 8k * 8k` logits (8 GiB).
 */
export const OBSERVE_BLOCK = 1 << 22;

/**
 * Causal softmax attention of `queries` float32 `[queryHeads, n, headDim]` over the cache, reduced to kv heads.
 *
 * Query `t` at position `queryPositions[t]` sees slots whose position is `<=` it; logits are
 * `scale * q.k` (+ `log(count)` when `proportional`), softmax is max-subtracted, and a query that sees
 * no slot contributes zeros. Query head `q` belongs to kv head `floor(q / (queryHeads / kvHeads))`.
 *
 * The queries of each kv head's group are one batched matMul against its keys, processed in chunks of
 * queries so that at most {@link OBSERVE_BLOCK} logits exist at once; per-chunk query sums are added up.
 * @throws ShapeError when shapes disagree, queryHeads is not a positive multiple of kvHeads, or
 *   (`proportional`) a count is < 1.
 * @throws ConfigError when an option is invalid (reduction not mean/max/sum, scale not finite, proportional not boolean).
 */
export function observe(
  layer: LayerCache<tf.Tensor>,
  queries: tf.Tensor,
  queryPositions: tf.Tensor,
  options: ObserveOptions = {},
  block: number = OBSERVE_BLOCK,
): ObservedAttention<tf.Tensor> {
  const { heads: H, length: L, headDim: D } = layerDims(layer, 'observe');
  const [QH, n] = dimsOf(queries, 'observe queries', 'float32', 3) as [number, number, number];
  expectShape(queries.shape, [QH, n, D], 'observe queries');
  if (H === 0 ? QH !== 0 : QH === 0 || QH % H !== 0) {
    throw new ShapeError(`observe queries has ${QH} query heads, which is not a positive multiple of the layer's ${H} kv heads`, {
      field: 'queries', queryHeads: QH, kvHeads: H,
    });
  }
  expectShape(dimsOf(queryPositions, 'observe queryPositions', 'int32', 1), [n], 'observe queryPositions');
  if (typeof options !== 'object' || options === null) badOption('observe options', '', 'type', 'must be an object', 'object');
  const reduction = options.groupReduction ?? 'mean';
  if (!REDUCTIONS.includes(reduction)) {
    badOption('observe options', '/groupReduction', 'enum', `must be one of "mean", "max", "sum"; got ${JSON.stringify(reduction)}`, REDUCTIONS);
  }
  const scale = options.scale ?? (D > 0 ? 1 / Math.sqrt(D) : 1);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) {
    badOption('observe options', '/scale', 'type', `must be a finite number; got ${String(scale)}`, 'finite number');
  }
  const proportional = options.proportional ?? false;
  if (typeof proportional !== 'boolean') badOption('observe options', '/proportional', 'type', `must be a boolean; got ${JSON.stringify(proportional)}`, [true, false]);
  if (proportional && H * L > 0) {
    checkContents(
      () => tf.less(tf.min(layer.counts), 1),
      () => {
        const c = layer.counts.dataSync();
        const i = c.findIndex((v) => v < 1);
        if (i < 0) return;
        const h = Math.floor(i / L);
        throw new ShapeError(`observe layer.counts (proportional attention takes log(count))[${h}, ${i - h * L}] = ${c[i]} must be >= 1`, {
          field: 'observe layer.counts', head: h, index: i - h * L, value: c[i],
        });
      },
      'observe layer.counts',
    );
  }

  return tf.tidy(() => {
    if (H === 0 || L === 0 || n === 0) return { sums: tf.zeros([H, L], 'float32'), last: tf.zeros([H, L], 'float32') };
    const G = QH / H;
    // [H, G, n, D]: query head q = h * G + g.
    const q4 = tf.reshape(queries, [H, G, n, D]);
    const slotPos = tf.reshape(layer.positions, [H, 1, L]);
    const bias = proportional ? tf.reshape(tf.log(tf.cast(layer.counts, 'float32')), [H, 1, L]) : undefined;
    const chunk = Math.max(1, Math.min(n, Math.floor(block / Math.max(1, H * G * L))));
    let sums: tf.Tensor | undefined;
    let last: tf.Tensor | undefined;
    for (let t0 = 0; t0 < n; t0 += chunk) {
      const tc = Math.min(chunk, n - t0);
      const probs = tf.tidy(() => {
        const q = tf.reshape(tf.slice(q4, [0, 0, t0, 0], [H, G, tc, D]), [H, G * tc, D]);
        let logits = tf.mul(tf.matMul(q, layer.keys, false, true), scale);
        if (bias) logits = tf.add(logits, bias);
        // Row g * tc + t holds query t0 + t; its position decides which slots it sees.
        const rowPos = tf.reshape(tf.tile(tf.slice(queryPositions, [t0], [tc]), [G]), [1, G * tc, 1]);
        const visible = tf.lessEqual(slotPos, rowPos);
        const masked = tf.where(visible, logits, tf.scalar(-Infinity));
        const max = tf.max(masked, -1, true);
        // A row that sees nothing has max -Infinity; any finite shift keeps its exps at exactly 0.
        const shift = tf.where(tf.isFinite(max), max, tf.zerosLike(max));
        const e = tf.where(visible, tf.exp(tf.sub(logits, shift)), tf.scalar(0));
        const total = sumAxis(e, -1, true);
        const p = tf.div(e, tf.where(tf.greater(total, 0), total, tf.onesLike(total)));
        return tf.reshape(p, [H, G, tc, L]);
      });
      const previous = sums;
      sums = tf.tidy(() => (previous ? tf.add(previous, sumAxis(probs, 2)) : sumAxis(probs, 2)));
      previous?.dispose();
      if (t0 + tc === n) last = tf.tidy(() => tf.reshape(tf.slice(probs, [0, 0, tc - 1, 0], [H, G, 1, L]), [H, G, L]));
      probs.dispose();
    }
    const reduce = (x: tf.Tensor): tf.Tensor => (reduction === 'max' ? tf.max(x, 1) : reduction === 'sum' ? tf.sum(x, 1) : tf.div(tf.sum(x, 1), G));
    return { sums: reduce(sums!), last: reduce(last!) };
  });
}
