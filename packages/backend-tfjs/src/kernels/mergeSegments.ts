import * as tf from '@tensorflow/tfjs-core';
import type { KernelImplementation, LayerCache, MergeSegmentsCall, ScreenResult } from '@kvfold/core';
import { column, firstRows, flatIndex, headStarts, shiftDown, takeRows } from '../ops.js';
import { anyOf, screened } from '../screen.js';
import { emptyLayer } from './gather.js';

/**
 * Collapse runs of slots into one slot each (KVMerger). For output slot `o` of head `h`, the members
 * are the input slots with `segment = o`, `p = pivot[h, o]`:
 * `g_i = exp(-||k_p - k_i||^2 / (2 sigma^2))` (exactly 1 when the distance is 0), `w_i = g_i / sum g`,
 * key = `sum w_i k_i`, value = `C * sum w_i v_i / c_i` with `C = sum c_i` (`valueScale: 'count'`) or
 * `sum w_i v_i` (`'none'`), position = `positions[p]`, count = `C`, score = sum of member scores.
 * Slots with segment `-1` are dropped.
 *
 * As a tensor program, O(length * headDim) per head. Heads are flattened into `kvHeads * length` rows
 * and runs into `kvHeads * outLength` output rows plus one row that collects dropped slots (sliced off,
 * a contiguous view): each slot takes its run's pivot key and sigma, computes its weight, and every
 * per-run sum is made of scatterNDs (which add duplicate indices). See {@link runSummer} for why the
 * sums take two scatters.
 */
export const mergeSegments: KernelImplementation<MergeSegmentsCall<tf.Tensor>, LayerCache<tf.Tensor>> = { screen: screenPlan, run: merge };

function merge({ layer, plan, dims, outLength: M, byCount }: MergeSegmentsCall<tf.Tensor>): LayerCache<tf.Tensor> {
  const { heads: H, length: L, headDim: D } = dims;

  return tf.tidy(() => {
    if (H === 0 || M === 0) return emptyLayer(H, M, D);
    const N = H * L;
    const HM = H * M;
    const kept = tf.greaterEqual(tf.reshape(plan.segment, [N]), tf.scalar(0, 'int32'));
    // Flat output row of each slot: its run's row h * M + segment, or HM (the dump row) when dropped.
    const row = tf.where(kept, flatIndex(plan.segment, M), tf.fill([N], HM, 'int32'));
    // Each slot's pivot (flat slot index) and sigma; the dump row's entries are any valid values.
    const pivotRows = flatIndex(plan.pivot, L);
    const pivotOf = takeRows(tf.concat([pivotRows, tf.zeros([1], 'int32')]), row);
    const sigmaOf = takeRows(tf.concat([tf.reshape(plan.sigma, [HM]), tf.ones([1], 'float32')]), row);
    const keys = tf.reshape(layer.keys, [N, D]);
    const values = tf.reshape(layer.values, [N, D]);
    // ||k_p - k_i||^2 / (2 sigma^2) with the difference divided by sigma before it is squared: squaring
    // first overflows float32 for keys above about 1e19 (then Inf / Inf = NaN); scaled, a huge ratio can
    // only give exp(-Inf) = 0, as the reference's float64 gives.
    const z = tf.div(tf.sub(takeRows(keys, pivotOf), keys), column(sigmaOf, D));
    const e = tf.mul(tf.sum(tf.square(z), -1), tf.scalar(0.5));
    const g = tf.where(kept, tf.where(tf.equal(e, 0), tf.onesLike(e), tf.exp(tf.neg(e))), tf.zerosLike(e));
    const segSum = runSummer(row, H, L, HM);
    const sumG = segSum(g);
    const counts = tf.where(kept, tf.reshape(layer.counts, [N]), tf.zerosLike(row));
    const total = segSum(counts, true);
    const outKeys = tf.div(segSum(tf.mul(keys, column(g, D))), column(sumG, D));
    // Dropped slots' counts may be anything (even 0); they weigh 0, so divide by 1 there.
    const vw = byCount ? tf.div(g, tf.maximum(tf.cast(counts, 'float32'), tf.scalar(1))) : g;
    const weighted = tf.div(segSum(tf.mul(values, column(vw, D))), column(sumG, D));
    const outValues = byCount ? tf.mul(weighted, column(tf.cast(total, 'float32'), D)) : weighted;
    const scores = tf.where(kept, tf.reshape(layer.scores, [N]), tf.zerosLike(g));
    return {
      keys: tf.reshape(outKeys, [H, M, D]),
      values: tf.reshape(outValues, [H, M, D]),
      positions: tf.reshape(takeRows(tf.reshape(layer.positions, [N]), pivotRows), [H, M]),
      counts: tf.reshape(total, [H, M]),
      scores: tf.reshape(segSum(scores), [H, M]),
    };
  });
}

/** Slots per first-level block of {@link runSummer}. */
const RUN_BLOCK = 16;

/**
 * Build the per-run sum `[N, ...] -> [HM, ...]` for flat run rows `row [N]` (`HM` = dropped). Call inside `tf.tidy`.
 *
 * One scatterND would add a run's members one after another in float32. With long runs whose terms
 * cancel (values of random sign), that error reached 2e-5 relative in the 8192-slot parity test against
 * the reference's float64 sums. So members are first summed within blocks of {@link RUN_BLOCK}
 * consecutive slots of the same run ("pieces", numbered with a cumsum over piece starts), then the
 * pieces of each run are summed: about `16 + n / 16` sequential additions instead of `n`. Integer sums
 * are exact and take one scatter.
 */
function runSummer(row: tf.Tensor, H: number, L: number, HM: number): (x: tf.Tensor, exact?: boolean) => tf.Tensor {
  const N = H * L;
  const direct = tf.reshape(row, [N, 1]);
  // A piece starts at a block boundary of its head (head starts included) or where the run changes.
  const blockStart = tf.equal(tf.mod(tf.mod(tf.range(0, N, 1, 'int32'), tf.scalar(L, 'int32')), tf.scalar(RUN_BLOCK, 'int32')), tf.scalar(0, 'int32'));
  const starts = tf.cast(tf.logicalOr(blockStart, tf.notEqual(row, shiftDown(row, -1))), 'int32');
  const piece = tf.sub(tf.cumsum(starts), tf.scalar(1, 'int32'));
  // Run row + 1 of each piece, written by its first slot only (the others add 0); 0 = unused piece.
  const pieceRun = tf.scatterND(tf.reshape(piece, [N, 1]), tf.mul(tf.add(row, tf.scalar(1, 'int32')), starts), [N]);
  // Unused pieces hold zero sums; send them to the dump row.
  const pieceRow = tf.where(tf.greater(pieceRun, 0), tf.sub(pieceRun, tf.scalar(1, 'int32')), tf.fill([N], HM, 'int32'));
  const first = tf.reshape(piece, [N, 1]);
  const second = tf.reshape(pieceRow, [N, 1]);
  return (x, exact = false) => {
    const rest = x.shape.slice(1);
    const out = exact ? tf.scatterND(direct, x, [HM + 1, ...rest]) : tf.scatterND(second, tf.scatterND(first, x, [N, ...rest]), [HM + 1, ...rest]);
    return firstRows(out, HM);
  };
}

/**
 * Screen a segment plan on the backend, reading back one flag. Kept ids must read 0, (same or +1)...,
 * M - 1 along each head: compacting the kept ids with a cumsum-indexed scatterND and differencing
 * neighbours checks that without a loop.
 */
function screenPlan({ layer, plan, dims, outLength: M, byCount }: MergeSegmentsCall<tf.Tensor>): ScreenResult {
  const { heads: H, length: L } = dims;
  if (H === 0) return { valid: true };
  // No slots: only a plan with no output slot is valid; the host check names the problem otherwise.
  if (L === 0) return { valid: M === 0 };
  const N = H * L;
  return screened(() => {
    const seg = plan.segment;
    const flags: tf.Tensor[] = [tf.logicalOr(tf.less(seg, tf.scalar(-1, 'int32')), tf.greaterEqual(seg, tf.scalar(M, 'int32')))];
    const kept = tf.greaterEqual(seg, tf.scalar(0, 'int32'));
    // Where each kept slot lands when the kept slots of a head are packed to its front.
    const dest = tf.where(tf.reshape(kept, [N]), flatIndex(tf.cumsum(tf.cast(kept, 'int32'), 1, true), L), tf.fill([N], N, 'int32'));
    // compact[h, j] = 1 + id of the j-th kept slot of head h, 0 past the last one.
    const compact = firstRows(tf.scatterND(tf.reshape(dest, [N, 1]), tf.reshape(tf.add(seg, tf.scalar(1, 'int32')), [N]), [N + 1]), N);
    const previous = tf.mul(shiftDown(compact, 0), tf.cast(tf.logicalNot(headStarts(H, L)), 'int32'));
    const step = tf.sub(compact, previous);
    flags.push(tf.logicalAnd(tf.greater(compact, tf.scalar(0, 'int32')), tf.logicalOr(tf.less(step, tf.scalar(0, 'int32')), tf.greater(step, tf.scalar(1, 'int32')))));
    // Ids are non-decreasing, so the largest is the last: it must be M (ids + 1).
    flags.push(tf.notEqual(tf.max(tf.reshape(compact, [H, L]), 1), tf.scalar(M, 'int32')));
    if (M > 0) {
      const p = plan.pivot;
      const inRange = tf.logicalAnd(tf.greaterEqual(p, tf.scalar(0, 'int32')), tf.less(p, tf.scalar(L, 'int32')));
      const runOfPivot = tf.reshape(takeRows(tf.reshape(seg, [N]), flatIndex(tf.clipByValue(p, 0, L - 1), L)), [H, M]);
      flags.push(tf.logicalNot(tf.logicalAnd(inRange, tf.equal(runOfPivot, tf.range(0, M, 1, 'int32')))));
      flags.push(tf.logicalNot(tf.greater(plan.sigma, tf.scalar(0))));
    }
    if (byCount) flags.push(tf.logicalAnd(kept, tf.less(layer.counts, tf.scalar(1, 'int32'))));
    return anyOf(flags);
  });
}
