import * as tf from '@tensorflow/tfjs-core';
import { ShapeError, type LayerCache, type NeighbourMergePlan } from '@kvfold/core';
import { anyOf, batchGather, dimsOf, expectShape, headIndex, hostRange, layerDims } from '../validate.js';
import { gatherRows } from './gather.js';

/** Largest scatter update block (elements) materialised at once when spreading sources over their windows. */
const SPREAD_BLOCK = 1 << 22;

/**
 * CaM value merge: gather the kept slots, then for each source `s` with `targetCount > 0`, add
 * `gate[s] * v[source[s]] / targetCount[s]` to the values of kept slots
 * `targetStart[s] .. targetStart[s] + targetCount[s] - 1`. `v` is the input layer's values. Keys,
 * positions, counts and scores are gathered unchanged.
 *
 * Each source's scaled value is repeated once per window offset and added to its targets by scatterND
 * (which sums duplicates), `O(sources * maxWindow * headDim)` like the reference loop. The one scalar
 * this needs on the host (the largest window) comes back with the validation flag in one download.
 * @throws ShapeError when `keep` is not strictly ascending within `[0, length)`, a source is out of
 *   range, a target window leaves `keep`, a count is negative, a gate is not finite, or shapes disagree.
 */
export function mergeIntoNeighbours(layer: LayerCache<tf.Tensor>, plan: NeighbourMergePlan<tf.Tensor>): LayerCache<tf.Tensor> {
  const { heads: H, length: L, headDim: D } = layerDims(layer, 'mergeIntoNeighbours');
  if (typeof plan !== 'object' || plan === null) throw new ShapeError('mergeIntoNeighbours: plan must be a NeighbourMergePlan object', { field: 'plan' });
  const K = dimsOf(plan.keep, 'mergeIntoNeighbours plan.keep', 'int32', 2)[1]!;
  expectShape(plan.keep.shape, [H, K], 'mergeIntoNeighbours plan.keep');
  const S = dimsOf(plan.source, 'mergeIntoNeighbours plan.source', 'int32', 2)[1]!;
  expectShape(plan.source.shape, [H, S], 'mergeIntoNeighbours plan.source');
  expectShape(dimsOf(plan.targetStart, 'mergeIntoNeighbours plan.targetStart', 'int32', 2), [H, S], 'mergeIntoNeighbours plan.targetStart');
  expectShape(dimsOf(plan.targetCount, 'mergeIntoNeighbours plan.targetCount', 'int32', 2), [H, S], 'mergeIntoNeighbours plan.targetCount');
  expectShape(dimsOf(plan.gate, 'mergeIntoNeighbours plan.gate', 'float32', 2), [H, S], 'mergeIntoNeighbours plan.gate');
  const maxWindow = checkPlan(plan, H, L, K, S);

  return tf.tidy(() => {
    const out = gatherRows(layer, plan.keep);
    if (maxWindow === 0 || D === 0 || K === 0) return out;
    const count = plan.targetCount;
    const active = tf.greater(count, 0);
    const factor = tf.where(active, tf.div(plan.gate, tf.maximum(tf.cast(count, 'float32'), 1)), tf.zerosLike(plan.gate));
    const scaled = tf.mul(batchGather(layer.values, plan.source), tf.expandDims(factor, -1));
    // A zero factor must add exactly nothing, even for an infinite value (0 * Infinity is NaN).
    const update = tf.where(tf.expandDims(tf.notEqual(factor, 0), -1), scaled, tf.zerosLike(scaled));
    const heads = headIndex(H, S);
    const step = Math.max(1, Math.min(maxWindow, Math.floor(SPREAD_BLOCK / Math.max(1, H * S * D))));
    let added: tf.Tensor | undefined;
    for (let j0 = 0; j0 < maxWindow; j0 += step) {
      const J = Math.min(step, maxWindow - j0);
      const previous = added;
      added = tf.tidy(() => {
        const offset = tf.reshape(tf.range(j0, j0 + J, 1, 'int32'), [1, 1, J]);
        // Offsets past a source's window go to the extra row K, sliced off below.
        const target = tf.where(tf.less(offset, tf.expandDims(count, -1)), tf.add(tf.expandDims(plan.targetStart, -1), offset), tf.scalar(K, 'int32'));
        const index = tf.stack([tf.tile(tf.expandDims(heads, -1), [1, 1, J]), target], -1);
        const spread = tf.scatterND(index, tf.tile(tf.expandDims(update, 2), [1, 1, J, 1]), [H, K + 1, D]);
        return previous ? tf.add(previous, spread) : spread;
      });
      previous?.dispose();
    }
    return { ...out, values: tf.add(out.values, tf.slice(added!, [0, 0, 0], [H, K, D])) };
  });
}

/**
 * Validate the plan on the backend and return the largest window, both read back in one download;
 * on failure, download the plan and name the first offending element.
 */
function checkPlan(plan: NeighbourMergePlan<tf.Tensor>, H: number, L: number, K: number, S: number): number {
  if (H === 0 || (K === 0 && S === 0)) return 0;
  const summary = tf.tidy(() => {
    const flags: tf.Tensor[] = [];
    const keep = plan.keep;
    if (K > 0) {
      flags.push(tf.logicalOr(tf.less(keep, 0), tf.greaterEqual(keep, L)));
      if (K > 1) flags.push(tf.lessEqual(tf.slice(keep, [0, 1], [H, K - 1]), tf.slice(keep, [0, 0], [H, K - 1])));
    }
    let maxWindow: tf.Tensor = tf.scalar(0, 'int32');
    if (S > 0) {
      const c = plan.targetCount;
      const st = plan.targetStart;
      flags.push(tf.logicalOr(tf.less(plan.source, 0), tf.greaterEqual(plan.source, L)));
      flags.push(tf.less(c, 0));
      flags.push(tf.logicalAnd(tf.greater(c, 0), tf.logicalOr(tf.less(st, 0), tf.greater(tf.add(st, c), K))));
      flags.push(tf.logicalOr(tf.isNaN(plan.gate), tf.isInf(plan.gate)));
      maxWindow = tf.max(c);
    }
    return tf.stack([tf.cast(anyOf(flags), 'int32'), tf.relu(maxWindow)]);
  });
  let bad: number;
  let maxWindow: number;
  try {
    [bad, maxWindow] = summary.dataSync() as unknown as [number, number];
  } finally {
    summary.dispose();
  }
  if (bad === 0) return maxWindow;
  diagnose(plan, H, L, K, S);
  throw new ShapeError('mergeIntoNeighbours plan is invalid', { field: 'plan' });
}

/** Host walk of a plan already known to be invalid: throws for the first problem, in the reference's order. */
function diagnose(plan: NeighbourMergePlan<tf.Tensor>, H: number, L: number, K: number, S: number): void {
  const keep = plan.keep.dataSync() as Int32Array;
  hostRange(keep, K, 0, L - 1, 'mergeIntoNeighbours plan.keep');
  for (let h = 0; h < H; h++) {
    for (let j = 1; j < K; j++) {
      if (keep[h * K + j]! <= keep[h * K + j - 1]!) {
        throw new ShapeError(`mergeIntoNeighbours plan.keep[${h}, ${j}] = ${keep[h * K + j]} must be greater than plan.keep[${h}, ${j - 1}] = ${keep[h * K + j - 1]} (kept slots are strictly ascending)`, {
          field: 'plan.keep', head: h, index: j,
        });
      }
    }
  }
  hostRange(plan.source.dataSync() as Int32Array, S, 0, L - 1, 'mergeIntoNeighbours plan.source');
  const tCount = plan.targetCount.dataSync() as Int32Array;
  const tStart = plan.targetStart.dataSync() as Int32Array;
  const gate = plan.gate.dataSync() as Float32Array;
  for (let i = 0; i < H * S; i++) {
    const h = Math.floor(i / S);
    const c = tCount[i]!;
    const st = tStart[i]!;
    if (c < 0) throw new ShapeError(`mergeIntoNeighbours plan.targetCount[${h}, ${i - h * S}] = ${c} must be >= 0`, { field: 'plan.targetCount', head: h, index: i - h * S, value: c });
    if (c > 0 && (st < 0 || st + c > K)) {
      throw new ShapeError(`mergeIntoNeighbours plan.targetStart[${h}, ${i - h * S}] = ${st} with targetCount ${c} leaves plan.keep (targets must lie in [0, ${K - 1}])`, {
        field: 'plan.targetStart', head: h, index: i - h * S, value: st, allowed: [0, K - c],
      });
    }
    if (!Number.isFinite(gate[i]!)) {
      throw new ShapeError(`mergeIntoNeighbours plan.gate[${h}, ${i - h * S}] = ${gate[i]} must be finite`, { field: 'plan.gate', head: h, index: i - h * S, value: gate[i] });
    }
  }
}
