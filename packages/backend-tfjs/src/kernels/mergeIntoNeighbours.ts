import * as tf from '@tensorflow/tfjs-core';
import type { KernelImplementation, LayerCache, MergeIntoNeighboursCall, ScreenResult } from '@kvfold/core';
import { column, finiteMask, firstRows, flatIndex, headStarts, shiftDown, takeRows } from '../ops.js';
import { anyOf } from '../screen.js';
import { gatherRows } from './gather.js';

/** What the plan's screen learns on the way: the largest target window, and whether the values are all finite. */
interface PlanFacts {
  readonly maxWindow: number;
  readonly finite: boolean;
}

/** Largest scatter update block (elements) materialised at once by the exact spread of {@link spreadExact}. */
const SPREAD_BLOCK = 1 << 22;

/**
 * CaM value merge: gather the kept slots, then for each source `s` with `targetCount > 0`, add
 * `gate[s] * v[source[s]] / targetCount[s]` to the values of kept slots
 * `targetStart[s] .. targetStart[s] + targetCount[s] - 1`. `v` is the input layer's values. Keys,
 * positions, counts and scores are gathered unchanged.
 *
 * Each window is a range update, done in `O((sources + kept) * headDim)` whatever the window sizes:
 * every source adds its scaled value at its window's first target and subtracts it just past its last
 * (one scatterND, which sums duplicates), and a cumulative sum over the kept slots turns these
 * differences into what each target receives. A cumulative sum would turn an infinite or NaN value
 * into NaN past its window, so when the layer's values are not all finite (checked in the same
 * download as the plan) the contributions are spread over each window explicitly instead,
 * `O(sources * maxWindow * headDim)` like the reference loop.
 */
export const mergeIntoNeighbours: KernelImplementation<MergeIntoNeighboursCall<tf.Tensor>, LayerCache<tf.Tensor>, PlanFacts> = {
  screen: screenPlan,
  run: merge,
};

/** The merge; `facts` come from the screen (computed here when a caller skipped it). */
function merge(call: MergeIntoNeighboursCall<tf.Tensor>, facts: PlanFacts = screenPlan(call).note!): LayerCache<tf.Tensor> {
  const { layer, plan, dims, kept: K, sources: S } = call;
  const { heads: H, length: L, headDim: D } = dims;
  const { maxWindow, finite } = facts;

  return tf.tidy(() => {
    // keep is strictly ascending (checked), so no head repeats a slot.
    const out = gatherRows(layer, plan.keep, true);
    if (maxWindow === 0 || D === 0 || K === 0) return out;
    const HS = H * S;
    const count = tf.reshape(plan.targetCount, [HS]);
    const active = tf.greater(count, tf.scalar(0, 'int32'));
    const gate = tf.reshape(plan.gate, [HS]);
    const factor = tf.where(active, tf.div(gate, tf.maximum(tf.cast(count, 'float32'), tf.scalar(1))), tf.zerosLike(gate));
    const source = takeRows(tf.reshape(layer.values, [H * L, D]), flatIndex(plan.source, L));
    const start = tf.reshape(plan.targetStart, [HS]);
    const added = finite ? rangeAdd(tf.mul(source, column(factor, D)), start, count, active, H, K) : spreadExact(source, factor, start, count, H, K, maxWindow);
    return { ...out, values: tf.add(out.values, added) };
  });
}

/**
 * Sum of the range updates `update[s]` over kept slots `[start[s], start[s] + count[s])` of each head,
 * `[H, K, D]`, by differences and a cumulative sum (finite updates only). Inactive sources add zeros.
 * Call inside `tf.tidy`.
 */
function rangeAdd(update: tf.Tensor, start: tf.Tensor, count: tf.Tensor, active: tf.Tensor, H: number, K: number): tf.Tensor {
  const HS = start.shape[0]!;
  const D = update.shape[1]!;
  const S = HS / H;
  // Flat target row h * K + t; a window that ends at the last target subtracts into one spare row HK.
  const first = tf.where(active, flatIndex(tf.reshape(start, [H, S]), K), tf.zerosLike(start));
  const endT = tf.add(start, count);
  const end = tf.where(tf.logicalAnd(active, tf.less(endT, tf.scalar(K, 'int32'))), flatIndex(tf.reshape(endT, [H, S]), K), tf.fill([HS], H * K, 'int32'));
  const diff = tf.scatterND(tf.reshape(tf.concat([first, end]), [2 * HS, 1]), tf.concat([update, tf.neg(update)]), [H * K + 1, D]);
  return tf.cumsum(tf.reshape(firstRows(diff, H * K), [H, K, D]), 1);
}

/**
 * The same sum with each source's scaled value written to every target of its window (scatterND adds
 * duplicates), in blocks of window offsets; a zero factor adds exactly nothing even for an infinite
 * value. Used when values are not all finite. Call inside `tf.tidy`.
 */
function spreadExact(source: tf.Tensor, factor: tf.Tensor, start: tf.Tensor, count: tf.Tensor, H: number, K: number, maxWindow: number): tf.Tensor {
  const HS = source.shape[0]!;
  const D = source.shape[1]!;
  const scaled = tf.mul(source, column(factor, D));
  const update = tf.where(tf.tile(tf.reshape(tf.notEqual(factor, 0), [HS, 1]), [1, D]), scaled, tf.zerosLike(scaled));
  const base = flatIndex(tf.reshape(start, [H, HS / H]), K);
  const step = Math.max(1, Math.min(maxWindow, Math.floor(SPREAD_BLOCK / Math.max(1, HS * D))));
  let added: tf.Tensor | undefined;
  for (let j0 = 0; j0 < maxWindow; j0 += step) {
    const J = Math.min(step, maxWindow - j0);
    const previous = added;
    added = tf.tidy(() => {
      const offset = tf.reshape(tf.range(j0, j0 + J, 1, 'int32'), [1, J]);
      // Offsets past a source's window go to the spare row HK, sliced off below.
      const target = tf.where(tf.less(offset, tf.reshape(count, [HS, 1])), tf.add(tf.reshape(base, [HS, 1]), offset), tf.fill([HS, J], H * K, 'int32'));
      const spread = tf.scatterND(tf.reshape(target, [HS * J, 1]), tf.reshape(tf.tile(update, [1, J]), [HS * J, D]), [H * K + 1, D]);
      return previous ? tf.add(previous, spread) : spread;
    });
    previous?.dispose();
  }
  return tf.reshape(firstRows(added!, H * K), [H, K, D]);
}

/**
 * Screen the plan on the backend and learn the largest window and whether the layer's values are all
 * finite, read back with the validation flag in one download.
 */
function screenPlan({ layer, plan, dims, kept: K, sources: S }: MergeIntoNeighboursCall<tf.Tensor>): ScreenResult<PlanFacts> {
  const { heads: H, length: L } = dims;
  if (H === 0 || (K === 0 && S === 0)) return { valid: true, note: { maxWindow: 0, finite: true } };
  const summary = tf.tidy(() => {
    const flags: tf.Tensor[] = [];
    const keep = plan.keep;
    if (K > 0) {
      flags.push(tf.logicalOr(tf.less(keep, tf.scalar(0, 'int32')), tf.greaterEqual(keep, tf.scalar(L, 'int32'))));
      // Strictly ascending within each head: compare each entry with the previous one of the flat rows.
      const flat = tf.reshape(keep, [H * K]);
      flags.push(tf.logicalAnd(tf.logicalNot(headStarts(H, K)), tf.lessEqual(flat, shiftDown(flat, -1))));
    }
    let maxWindow: tf.Tensor = tf.scalar(0, 'int32');
    if (S > 0) {
      const c = plan.targetCount;
      const st = plan.targetStart;
      flags.push(tf.logicalOr(tf.less(plan.source, tf.scalar(0, 'int32')), tf.greaterEqual(plan.source, tf.scalar(L, 'int32'))));
      flags.push(tf.less(c, tf.scalar(0, 'int32')));
      flags.push(tf.logicalAnd(tf.greater(c, tf.scalar(0, 'int32')), tf.logicalOr(tf.less(st, tf.scalar(0, 'int32')), tf.greater(tf.add(st, c), tf.scalar(K, 'int32')))));
      flags.push(tf.logicalOr(tf.isNaN(plan.gate), tf.isInf(plan.gate)));
      maxWindow = tf.max(c);
    }
    // A row sum is finite unless the row holds an infinity or NaN (or overflows, which only costs speed).
    const finite = L > 0 && layer.values.shape[2]! > 0 ? tf.logicalNot(tf.any(tf.logicalNot(finiteMask(tf.sum(layer.values, -1))))) : tf.scalar(true, 'bool');
    return tf.stack([tf.cast(anyOf(flags), 'int32'), tf.relu(maxWindow), tf.cast(finite, 'int32')]);
  });
  let bad: number;
  let maxWindow: number;
  let finite: number;
  try {
    [bad, maxWindow, finite] = summary.dataSync() as unknown as [number, number, number];
  } finally {
    summary.dispose();
  }
  return { valid: bad === 0, note: { maxWindow, finite: finite === 1 } };
}
