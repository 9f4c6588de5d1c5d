import * as tf from '@tensorflow/tfjs-core';
import type { KernelImplementation, LayerCache, MergeSegmentsCall, ScreenResult } from '@kvfold/core';
import { column, firstRows, FLOAT_EXACT, flatIndex, headRowIndex, headStarts, indexPairs, rowRange, shiftDown, takeRows } from '../ops.js';
import { anyOf, screened } from '../screen.js';
import { emptyLayer, type LayerFields } from './gather.js';

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

  if (H > 0 && M > 0 && L > 0 && D > 0 && tf.getBackend() === 'wasm' && H * L < 1 << 22 && H * (M + 1) < 1 << 22) return tf.tidy(() => mergeBlocked(layer, plan, H, L, D, M, byCount));
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

/** Largest block of keys or values (elements) {@link mergeBlocked} materialises at once. */
const MERGE_BLOCK = 1 << 22;

/**
 * The merge on wasm, heads in blocks of at most {@link MERGE_BLOCK} elements: the program above holds
 * about fifteen `[kvHeads * length, headDim]` intermediates until its tidy ends (966 MiB at 32 x 4096 x 128,
 * 15x the output), this one a few blocks plus the output. A block's runs are all its own (runs never
 * cross heads), so each block does the whole merge: distances to the pivots, weights, and the two-level
 * run sums of {@link runSummer} on block-local rows. The weights are normalised per slot before the sums
 * (`w_i = g_i / sum g`, times `C / c_i` for values), so the sums are the outputs with no pass after them.
 * Index arithmetic is float32 (exact below 2^22, checked by the caller): wasm's int32 ops that broadcast
 * run element by element. Call inside `tf.tidy`.
 */
function mergeBlocked(layer: LayerCache<tf.Tensor>, plan: MergeSegmentsCall<tf.Tensor>['plan'], H: number, L: number, D: number, M: number, byCount: boolean): LayerFields {
  const B = Math.max(1, Math.min(H, Math.floor(MERGE_BLOCK / (L * D))));
  const seg = tf.cast(plan.segment, 'float32');
  const kept = tf.greaterEqual(seg, tf.scalar(0));
  // Head and slot of every slot as [H, L] grids (arithmetic: wasm's Tile of these took 16-19 ms).
  const flat = tf.range(0, H * L, 1, 'float32');
  const heads = tf.reshape(tf.floor(tf.div(flat, tf.scalar(L))), [H, L]);
  const slots = tf.sub(tf.reshape(flat, [H, L]), tf.mul(heads, tf.scalar(L)));
  // Each slot's run (0 for dropped slots, whose values are never used) and that run's pivot and sigma.
  const run = indexPairs(heads, tf.maximum(seg, tf.scalar(0)), [H, L]);
  const pivot = tf.where(kept, tf.cast(tf.gatherND(plan.pivot, run), 'float32'), slots);
  const sigma = tf.where(kept, tf.gatherND(plan.sigma, run), tf.onesLike(seg));
  // A piece starts at a block boundary of its head or where the run changes; numbered within the head.
  // Sums of 0/1 floats: a bool [L] row broadcast against [H, L] runs element by element on wasm.
  const previous = tf.concat([tf.fill([H, 1], -2), tf.slice(seg, [0, 0], [H, L - 1])], 1);
  const blockStart = tf.cast(tf.equal(tf.mod(tf.range(0, L, 1, 'float32'), tf.scalar(RUN_BLOCK)), tf.scalar(0)), 'float32');
  const starts = tf.minimum(tf.add(tf.cast(tf.notEqual(seg, previous), 'float32'), blockStart), tf.scalar(1));
  const piece = tf.sub(tf.cumsum(starts, 1), tf.scalar(1));
  const countsF = tf.cast(layer.counts, 'float32');
  const keys: tf.Tensor[] = [];
  const values: tf.Tensor[] = [];
  const counts: tf.Tensor[] = [];
  const scores: tf.Tensor[] = [];
  for (let h0 = 0; h0 < H; h0 += B) {
    const b = Math.min(B, H - h0);
    const [k, v, ct, sc] = tf.tidy(() => {
      const part = (x: tf.Tensor): tf.Tensor => (b === H ? x : rowRange(x, h0, b));
      const local = tf.reshape(tf.range(0, b, 1, 'float32'), [b, 1]);
      const on = part(kept);
      // Block rows: slot (h, j) is row (h - h0) * L + j; its piece (h - h0) * L + piece; its output row
      // (h - h0) * M + segment, or b * M (dropped, sliced off).
      const pieceRow = tf.reshape(tf.cast(tf.add(part(piece), tf.mul(local, tf.scalar(L))), 'int32'), [b * L, 1]);
      const outRow = tf.where(on, tf.add(part(seg), tf.mul(local, tf.scalar(M))), tf.fill([b, L], b * M));
      const startsB = part(starts);
      // Output row + 1 of each piece, written by its first slot only; unused pieces go to the dump row.
      const firstOut = tf.scatterND(pieceRow, tf.reshape(tf.mul(tf.add(outRow, tf.scalar(1)), startsB), [b * L]), [b * L]);
      const pieceOut = tf.reshape(tf.cast(tf.where(tf.greater(firstOut, 0), tf.sub(firstOut, tf.scalar(1)), tf.fill([b * L], b * M)), 'int32'), [b * L, 1]);
      const runSum = (x: tf.Tensor): tf.Tensor => {
        const rest = x.shape.slice(1);
        const pieces = tf.scatterND(pieceRow, x, [b * L, ...rest]);
        const sums = tf.scatterND(pieceOut, pieces, [b * M + 1, ...rest]);
        pieces.dispose();
        return sums;
      };
      // ||k_p - k_i||^2 / (2 sigma^2), the difference divided by sigma before it is squared (see merge).
      const own = b === H ? layer.keys : tf.gatherND(layer.keys, tf.reshape(tf.range(h0, h0 + b, 1, 'int32'), [b, 1]));
      const pivotKeys = tf.gatherND(layer.keys, indexPairs(part(heads), part(pivot), [b, L]));
      const diff = tf.sub(pivotKeys, own);
      pivotKeys.dispose();
      const z = tf.div(diff, tf.reshape(part(sigma), [b, L, 1]));
      diff.dispose();
      const squares = tf.square(z);
      z.dispose();
      const e = tf.mul(tf.sum(squares, -1), tf.scalar(0.5));
      squares.dispose();
      const g = tf.where(on, tf.where(tf.equal(e, 0), tf.onesLike(e), tf.exp(tf.neg(e))), tf.zerosLike(e));
      // Per-slot weights g / sum g of its run (the pivot weighs exactly 1, so kept runs sum to >= 1).
      const flatOut = tf.reshape(tf.cast(outRow, 'int32'), [b * L, 1]);
      const perSlot = (sums: tf.Tensor): tf.Tensor => tf.reshape(tf.gatherND(sums, flatOut), [b, L]);
      const sumG = perSlot(runSum(tf.reshape(g, [b * L])));
      const w = tf.where(on, tf.div(g, tf.where(on, sumG, tf.onesLike(sumG))), tf.zerosLike(g));
      const weighted = (x: tf.Tensor, weight: tf.Tensor): tf.Tensor => {
        const scaled = tf.mul(x, tf.reshape(weight, [b, L, 1]));
        if (x !== layer.keys && x !== layer.values) x.dispose();
        const flat = tf.reshape(scaled, [b * L, D]);
        scaled.dispose();
        const sums = runSum(flat);
        flat.dispose();
        const out = firstRows(sums, b * M);
        sums.dispose();
        const shaped = tf.reshape(out, [b, M, D]);
        out.dispose();
        return shaped;
      };
      const outKeys = weighted(own, w);
      // Value weights w * C / c (dropped slots' counts may be anything, even 0: they weigh 0).
      const c = part(countsF);
      const total = perSlot(runSum(tf.reshape(tf.where(on, c, tf.zerosLike(c)), [b * L])));
      const vw = byCount ? tf.where(on, tf.div(tf.mul(w, total), tf.maximum(c, tf.scalar(1))), tf.zerosLike(w)) : w;
      const ownValues = b === H ? layer.values : tf.gatherND(layer.values, tf.reshape(tf.range(h0, h0 + b, 1, 'int32'), [b, 1]));
      const outValues = weighted(ownValues, vw);
      // Counts: exact integer sums (one scatter); scores: two-level float sums like the rows.
      const ci = part(layer.counts);
      const outCounts = tf.reshape(firstRows(tf.scatterND(flatOut, tf.reshape(tf.where(on, ci, tf.zerosLike(ci)), [b * L]), [b * M + 1]), b * M), [b, M]);
      const sc = part(layer.scores);
      const outScores = tf.reshape(firstRows(runSum(tf.reshape(tf.where(on, sc, tf.zerosLike(sc)), [b * L])), b * M), [b, M]);
      return [outKeys, outValues, outCounts, outScores];
    });
    keys.push(k);
    values.push(v);
    counts.push(ct);
    scores.push(sc);
  }
  const join = (parts: tf.Tensor[]): tf.Tensor => {
    if (parts.length === 1) return parts[0]!;
    const out = tf.concat(parts);
    for (const p of parts) p.dispose();
    return out;
  };
  return {
    keys: join(keys),
    values: join(values),
    positions: tf.gatherND(layer.positions, headRowIndex(plan.pivot)),
    counts: join(counts),
    scores: join(scores),
  };
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
  // Index arithmetic in float32 while every value is an exact float32 integer: wasm's int32 ops with a
  // scalar run element by element (5-13 ms each at 128 K slots, most of this screen).
  const t = N + 1 < FLOAT_EXACT && M + 1 < FLOAT_EXACT ? 'float32' : 'int32';
  const c = (v: number): tf.Tensor => tf.scalar(v, t);
  return screened(() => {
    const seg = tf.cast(plan.segment, t);
    const flags: tf.Tensor[] = [tf.logicalOr(tf.less(seg, c(-1)), tf.greaterEqual(seg, c(M)))];
    const kept = tf.greaterEqual(seg, c(0));
    // Where each kept slot lands when the kept slots of a head are packed to its front.
    const dest = tf.where(tf.reshape(kept, [N]), flatIndex(tf.cumsum(tf.cast(kept, 'int32'), 1, true), L), tf.fill([N], N, 'int32'));
    // compact[h, j] = 1 + id of the j-th kept slot of head h, 0 past the last one.
    const compact = firstRows(tf.scatterND(tf.reshape(dest, [N, 1]), tf.reshape(tf.add(seg, c(1)), [N]), [N + 1]), N);
    const previous = tf.mul(shiftDown(compact, 0), tf.cast(tf.logicalNot(headStarts(H, L)), t));
    const step = tf.sub(compact, previous);
    flags.push(tf.logicalAnd(tf.greater(compact, c(0)), tf.logicalOr(tf.less(step, c(0)), tf.greater(step, c(1)))));
    // Ids are non-decreasing, so the largest is the last: it must be M (ids + 1).
    flags.push(tf.notEqual(tf.max(tf.reshape(compact, [H, L]), 1), c(M)));
    if (M > 0) {
      const p = plan.pivot;
      // Casting to float32 keeps every comparison with 0 and L (exact) right, even for huge ids.
      const pt = tf.cast(p, t);
      const inRange = tf.logicalAnd(tf.greaterEqual(pt, c(0)), tf.less(pt, c(L)));
      const runOfPivot = tf.reshape(takeRows(tf.reshape(seg, [N]), flatIndex(tf.clipByValue(p, 0, L - 1), L)), [H, M]);
      flags.push(tf.logicalNot(tf.logicalAnd(inRange, tf.equal(runOfPivot, tf.range(0, M, 1, t)))));
      flags.push(tf.logicalNot(tf.greater(plan.sigma, tf.scalar(0))));
    }
    if (byCount) flags.push(tf.logicalAnd(kept, tf.less(tf.cast(layer.counts, t), c(1))));
    return anyOf(flags);
  });
}
