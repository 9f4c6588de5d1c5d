import * as tf from '@tensorflow/tfjs-core';
import { ShapeError, type LayerCache, type SegmentPlan } from '@kvfold/core';
import { anyOf, batchGather, badOption, checkContents, dimsOf, expectShape, headIndex, layerDims } from '../validate.js';

/**
 * Collapse runs of slots into one slot each (KVMerger). For output slot `o` of head `h`, the members
 * are the input slots with `segment = o`, `p = pivot[h, o]`:
 * `g_i = exp(-||k_p - k_i||^2 / (2 sigma^2))` (exactly 1 when the distance is 0), `w_i = g_i / sum g`,
 * key = `sum w_i k_i`, value = `C * sum w_i v_i / c_i` with `C = sum c_i` (`valueScale: 'count'`) or
 * `sum w_i v_i` (`'none'`), position = `positions[p]`, count = `C`, score = sum of member scores.
 * Slots with segment `-1` are dropped.
 *
 * As a tensor program, O(length * headDim) per head: each input slot gathers its run's pivot key and
 * sigma, computes its weight, and every per-run sum is made of scatterNDs (which add duplicate
 * indices), with an extra output row collecting dropped slots. See {@link runSummer} for why the sums
 * take two scatters.
 * @throws ShapeError when the plan's shapes disagree with the layer, segment ids are not non-decreasing
 *   from 0 without gaps, a pivot is not a member of its run, sigma is not > 0, or (`count` mode) a member count is < 1.
 * @throws ConfigError when `valueScale` is not `count` or `none`.
 */
export function mergeSegments(layer: LayerCache<tf.Tensor>, plan: SegmentPlan<tf.Tensor>): LayerCache<tf.Tensor> {
  const { heads: H, length: L, headDim: D } = layerDims(layer, 'mergeSegments');
  if (typeof plan !== 'object' || plan === null) throw new ShapeError('mergeSegments: plan must be a SegmentPlan object', { field: 'plan' });
  expectShape(dimsOf(plan.segment, 'mergeSegments plan.segment', 'int32', 2), [H, L], 'mergeSegments plan.segment');
  const M = dimsOf(plan.pivot, 'mergeSegments plan.pivot', 'int32', 2)[1]!;
  expectShape(plan.pivot.shape, [H, M], 'mergeSegments plan.pivot');
  expectShape(dimsOf(plan.sigma, 'mergeSegments plan.sigma', 'float32', 2), [H, M], 'mergeSegments plan.sigma');
  const scale = plan.valueScale;
  if (scale !== 'count' && scale !== 'none') {
    badOption('mergeSegments plan', '/valueScale', 'enum', `must be one of "count", "none"; got ${JSON.stringify(scale)}`, ['count', 'none']);
  }
  const byCount = scale === 'count';
  checkPlan(layer.counts, plan, H, L, M, byCount);

  return tf.tidy(() => {
    if (H === 0 || M === 0) {
      return {
        keys: tf.zeros([H, M, D], 'float32'),
        values: tf.zeros([H, M, D], 'float32'),
        positions: tf.zeros([H, M], 'int32'),
        counts: tf.zeros([H, M], 'int32'),
        scores: tf.zeros([H, M], 'float32'),
      };
    }
    const kept = tf.greaterEqual(plan.segment, 0);
    // Dropped slots go to the extra output row M, sliced off at the end.
    const row = tf.where(kept, plan.segment, tf.scalar(M, 'int32'));
    const pivotOf = batchGather(tf.concat([plan.pivot, tf.zeros([H, 1], 'int32')], 1), row);
    const sigmaOf = batchGather(tf.concat([plan.sigma, tf.ones([H, 1], 'float32')], 1), row);
    const d2 = tf.sum(tf.square(tf.sub(batchGather(layer.keys, pivotOf), layer.keys)), -1);
    const gauss = tf.exp(tf.div(tf.neg(d2), tf.mul(tf.square(sigmaOf), 2)));
    // d2 = 0 gives exactly 1 even when 2 sigma^2 underflows to 0 (0 / 0).
    const g = tf.where(kept, tf.where(tf.equal(d2, 0), tf.onesLike(d2), gauss), tf.zerosLike(d2));
    const segSum = runSummer(row, H, L, M);
    const sumG = tf.expandDims(segSum(g), -1);
    const counts = tf.where(kept, layer.counts, tf.zerosLike(layer.counts));
    const total = segSum(counts, true);
    const keys = tf.div(segSum(tf.mul(tf.expandDims(g, -1), layer.keys)), sumG);
    // Dropped slots' counts may be anything (even 0); they weigh 0, so divide by 1 there.
    const vw = byCount ? tf.div(g, tf.maximum(tf.cast(counts, 'float32'), 1)) : g;
    const weighted = tf.div(segSum(tf.mul(tf.expandDims(vw, -1), layer.values)), sumG);
    const values = byCount ? tf.mul(weighted, tf.expandDims(tf.cast(total, 'float32'), -1)) : weighted;
    return {
      keys,
      values,
      positions: batchGather(layer.positions, plan.pivot),
      counts: total,
      scores: segSum(tf.where(kept, layer.scores, tf.zerosLike(layer.scores))),
    };
  });
}

/** Slots per first-level block of {@link runSummer}. */
const RUN_BLOCK = 16;

/**
 * Build the per-run sum `[H, L, ...] -> [H, M, ...]` for runs given by `row` (`[H, L]`, run id or M for
 * dropped slots). Call inside `tf.tidy`.
 *
 * One scatterND would add a run's members one after another in float32. With long runs whose terms
 * cancel (values of random sign), that error reached 2e-5 relative in the 8192-slot parity test against
 * the reference's float64 sums. So members are first summed within blocks of {@link RUN_BLOCK}
 * consecutive slots of the same run ("pieces", numbered with a cumsum over piece starts), then the
 * pieces of each run are summed: about `16 + n / 16` sequential additions instead of `n`. Integer sums
 * are exact and take one scatter.
 */
function runSummer(row: tf.Tensor, H: number, L: number, M: number): (x: tf.Tensor, exact?: boolean) => tf.Tensor {
  const heads = headIndex(H, L);
  const direct = tf.stack([heads, row], -1);
  // A piece starts at a block boundary or where the run changes.
  const slot = tf.reshape(tf.range(0, L, 1, 'int32'), [1, L]);
  const blockStart = tf.equal(tf.mod(slot, tf.scalar(RUN_BLOCK, 'int32')), tf.scalar(0, 'int32'));
  const previous = tf.concat([tf.fill([H, 1], -1, 'int32'), tf.slice(row, [0, 0], [H, L - 1])], 1);
  const starts = tf.logicalOr(blockStart, tf.notEqual(row, previous));
  const piece = tf.sub(tf.cumsum(tf.cast(starts, 'int32'), 1), tf.scalar(1, 'int32'));
  // Dropped slots interleaved with a run start new pieces too, so only L bounds the piece count.
  const P = L;
  const pieceIndex = tf.stack([heads, piece], -1);
  // Run of each piece (M, the dropped row, for piece numbers a head does not use).
  const pieceRun = tf.add(
    tf.scatterND(tf.stack([heads, tf.where(starts, piece, tf.scalar(P, 'int32'))], -1), tf.sub(row, tf.scalar(M, 'int32')), [H, P + 1]),
    tf.scalar(M, 'int32'),
  );
  const second = tf.stack([headIndex(H, P), tf.slice(pieceRun, [0, 0], [H, P])], -1);
  return (x, exact = false) => {
    const rest = x.shape.slice(2);
    const out = exact ? tf.scatterND(direct, x, [H, M + 1, ...rest]) : tf.scatterND(second, tf.scatterND(pieceIndex, x, [H, P, ...rest]), [H, M + 1, ...rest]);
    return tf.slice(out, Array(rest.length + 2).fill(0), [H, M, ...rest]);
  };
}

/**
 * Validate a segment plan on the backend, reading back one flag; on failure, download the plan and name
 * the first offending element. Kept ids must read 0, (same or +1)..., M - 1 along each head: compacting
 * the kept ids with a cumsum-indexed scatterND and differencing neighbours checks that without a loop.
 */
function checkPlan(countsT: tf.Tensor, plan: SegmentPlan<tf.Tensor>, H: number, L: number, M: number, byCount: boolean): void {
  if (H === 0) return;
  if (L === 0) {
    if (M !== 0) throw new ShapeError(`mergeSegments plan.pivot has ${M} output slots but the layer has no slots`, { field: 'plan.pivot', outputs: M });
    return;
  }
  checkContents(
    () => {
      const seg = plan.segment;
      const flags: tf.Tensor[] = [tf.logicalOr(tf.less(seg, -1), tf.greaterEqual(seg, M))];
      const kept = tf.greaterEqual(seg, 0);
      const keptI = tf.cast(kept, 'int32');
      const nKept = tf.sum(keptI, 1);
      const dest = tf.where(kept, tf.cumsum(keptI, 1, true), tf.scalar(L, 'int32'));
      const ids = tf.where(kept, tf.add(seg, tf.scalar(1, 'int32')), tf.zerosLike(seg));
      const compact = tf.slice(tf.scatterND(tf.stack([headIndex(H, L), dest], -1), ids, [H, L + 1]), [0, 0], [H, L]);
      const previous = tf.concat([tf.zeros([H, 1], 'int32'), tf.slice(compact, [0, 0], [H, L - 1])], 1);
      const step = tf.sub(compact, previous);
      const inList = tf.less(tf.reshape(tf.range(0, L, 1, 'int32'), [1, L]), tf.reshape(nKept, [H, 1]));
      flags.push(tf.logicalAnd(inList, tf.logicalOr(tf.less(step, 0), tf.greater(step, 1))));
      const lastIndex = tf.reshape(tf.relu(tf.sub(nKept, tf.scalar(1, 'int32'))), [H, 1]);
      const lastId = tf.where(tf.greater(tf.reshape(nKept, [H, 1]), 0), batchGather(compact, lastIndex), tf.zeros([H, 1], 'int32'));
      flags.push(tf.notEqual(lastId, tf.scalar(M, 'int32')));
      if (M > 0) {
        const p = plan.pivot;
        const inRange = tf.logicalAnd(tf.greaterEqual(p, 0), tf.less(p, L));
        const member = tf.equal(batchGather(seg, tf.clipByValue(p, 0, L - 1)), tf.reshape(tf.range(0, M, 1, 'int32'), [1, M]));
        flags.push(tf.logicalNot(tf.logicalAnd(inRange, member)));
        flags.push(tf.logicalNot(tf.greater(plan.sigma, 0)));
      }
      if (byCount) flags.push(tf.logicalAnd(kept, tf.less(countsT, 1)));
      return anyOf(flags);
    },
    () => diagnose(plan.segment.dataSync() as Int32Array, plan.pivot.dataSync() as Int32Array, plan.sigma.dataSync() as Float32Array, countsT.dataSync() as Int32Array, H, L, M, byCount),
    'mergeSegments plan',
  );
}

/** Host walk of a plan already known to be invalid: throws for the first problem, in the reference's order. */
function diagnose(seg: Int32Array, piv: Int32Array, sig: Float32Array, counts: Int32Array, H: number, L: number, M: number, byCount: boolean): void {
  const start = new Int32Array(H * M);
  const end = new Int32Array(H * M);
  for (let h = 0; h < H; h++) {
    let prev = -1;
    for (let i = 0; i < L; i++) {
      const s = seg[h * L + i]!;
      if (s === -1) continue;
      if (s !== prev) {
        if (s !== prev + 1) {
          const why = s < -1 ? 'ids must be >= -1' : s < prev ? 'kept ids must be non-decreasing' : `ids must cover 0..${M - 1} without gaps (expected ${prev + 1})`;
          throw new ShapeError(`mergeSegments plan.segment[${h}, ${i}] = ${s}: ${why}`, { field: 'plan.segment', head: h, index: i, value: s });
        }
        if (s >= M) {
          throw new ShapeError(`mergeSegments plan.segment[${h}, ${i}] = ${s} but plan.pivot has ${M} output slots (ids must be in [-1, ${M - 1}])`, {
            field: 'plan.segment', head: h, index: i, value: s, allowed: [-1, M - 1],
          });
        }
        prev = s;
        start[h * M + s] = i;
      }
      end[h * M + s] = i + 1;
      if (byCount && counts[h * L + i]! < 1) {
        throw new ShapeError(`mergeSegments layer.counts[${h}, ${i}] = ${counts[h * L + i]} must be >= 1 with valueScale "count"`, { field: 'layer.counts', head: h, index: i });
      }
    }
    if (prev !== M - 1) {
      throw new ShapeError(`mergeSegments plan.segment head ${h} uses output slots 0..${prev} but plan.pivot has ${M}; every head must produce the same number of slots`, {
        field: 'plan.segment', head: h, outputs: prev + 1, expected: M,
      });
    }
    for (let o = 0; o < M; o++) {
      const p = piv[h * M + o]!;
      if (p < 0 || p >= L || seg[h * L + p] !== o) {
        throw new ShapeError(`mergeSegments plan.pivot[${h}, ${o}] = ${p} is not a member of run ${o} (its slots are ${start[h * M + o]}..${end[h * M + o]! - 1})`, {
          field: 'plan.pivot', head: h, index: o, value: p,
        });
      }
      const sg = sig[h * M + o]!;
      if (!(sg > 0)) throw new ShapeError(`mergeSegments plan.sigma[${h}, ${o}] = ${sg} must be > 0`, { field: 'plan.sigma', head: h, index: o, value: sg });
    }
  }
}
