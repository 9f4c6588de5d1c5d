import * as tf from '@tensorflow/tfjs-core';
import type { KernelImplementation, LayerCache, MergeIntoNeighboursCall, ScreenResult } from '@kvfold/core';
import { column, FLOAT_EXACT, finiteMask, firstRows, flatIndex, headRowIndex, headStarts, indexPairs, rowRange, shiftDown, takeRows } from '../ops.js';
import { allOf, anyOf } from '../screen.js';
import { gatherRows } from './gather.js';

/** What the plan's screen learns on the way: the largest target window, and whether the values are all finite. */
interface PlanFacts {
  readonly maxWindow: number;
  /** Whether the layer's values are all finite; not checked on wasm (always true there). */
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
 * `O(sources * maxWindow * headDim)` like the reference loop; so they are too when that spread is at most
 * an eighth of the kept slots (a decode step's few sources), where it is the cheaper of the two.
 */
export const mergeIntoNeighbours: KernelImplementation<MergeIntoNeighboursCall<tf.Tensor>, LayerCache<tf.Tensor>, PlanFacts> = {
  screen: screenPlan,
  run: merge,
};

/** The merge; `facts` come from the screen (computed here when a caller skipped it). */
function merge(call: MergeIntoNeighboursCall<tf.Tensor>, facts: PlanFacts = screenPlan(call).note!): LayerCache<tf.Tensor> {
  const { layer, plan, dims, kept: K, sources: S } = call;
  const { heads: H, length: L, headDim: D } = dims;
  const { maxWindow } = facts;
  const scanned = (): boolean => tf.getBackend() === 'wasm' && SCAN_BLOCK * (H * Math.ceil(K / SCAN_BLOCK) + 1) < FLOAT_EXACT;

  if (D > 0 && K > 0 && maxWindow > 0 && S * maxWindow * 8 > K && scanned()) {
    const out = mergeScanned(call);
    if (out) return out;
  }
  // On wasm the screen does not check the values (the scan checks what it adds): whatever reaches here
  // there (few sources, a scan too large for float32 rows, or values that are not finite) takes the
  // exact spread.
  const finite = facts.finite && tf.getBackend() !== 'wasm';
  return tf.tidy(() => {
    // keep is strictly ascending (checked), so no head repeats a slot.
    const out = gatherRows(layer, plan.keep, true);
    if (maxWindow === 0 || D === 0 || K === 0) return out;
    const HS = H * S;
    const count = tf.reshape(plan.targetCount, [HS]);
    const active = tf.greater(count, tf.scalar(0, 'int32'));
    const gate = tf.reshape(plan.gate, [HS]);
    const factor = tf.where(active, tf.div(gate, tf.maximum(tf.cast(count, 'float32'), tf.scalar(1))), tf.zerosLike(gate));
    // The explicit spread writes sources x widest window rows, the cumulative sum runs over every kept
    // row; a spread row costs about 6 cumsum rows on wasm (speed preset, 4096 kept slots: 64 sources x
    // window 32 took 607-757 ms spread, 283 ms by cumsum). A decode step that evicts one slot per head
    // spreads 32 rows per head instead (the cumsum was 70% of that CaM step). This threshold was measured
    // against the cumsum; the blocked scan that replaced it on wasm ({@link scanAdd}) is cheaper, so the
    // best threshold there is likely lower (not re-measured).
    const sparse = S * maxWindow * 8 <= K;
    const source = takeRows(tf.reshape(layer.values, [H * L, D]), flatIndex(plan.source, L));
    const start = tf.reshape(plan.targetStart, [HS]);
    const added = finite && !sparse ? rangeAdd(tf.mul(source, column(factor, D)), start, count, active, H, K) : spreadExact(source, factor, start, count, H, K, maxWindow);
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

/** Largest block of kept values (elements) {@link mergeScanned} materialises at once. */
const CAM_BLOCK = 1 << 22;

/**
 * The merge on wasm when the values are finite and the windows many: keys, positions, counts and scores
 * gathered with `(head, slot)` pairs, values in blocks of whole heads (at most {@link CAM_BLOCK} kept
 * elements), each block's kept values plus its {@link scanAdd}, then joined. Per block the scratch is a
 * few blocks, so the peak stays near the output plus one more copy of the values (the join), where one
 * program over all heads held the doubled source rows and the grid of every head at once (866 MiB at
 * 32 x 16384 x 128). Undefined when some value added is not finite (see {@link scanAdd}): the caller
 * then runs the exact spread.
 */
function mergeScanned({ layer, plan, dims, kept: K }: MergeIntoNeighboursCall<tf.Tensor>): LayerCache<tf.Tensor> | undefined {
  const { heads: H, headDim: D } = dims;
  const B = Math.max(1, Math.min(H, Math.floor(CAM_BLOCK / (K * D))));
  const count = plan.targetCount;
  const factor = tf.tidy(() => tf.where(tf.greater(count, tf.scalar(0, 'int32')), tf.div(plan.gate, tf.maximum(tf.cast(count, 'float32'), tf.scalar(1))), tf.zerosLike(plan.gate)));
  const blocks: tf.Tensor[] = [];
  const flags: tf.Tensor[] = [];
  for (let h0 = 0; h0 < H; h0 += B) {
    const b = Math.min(B, H - h0);
    const [sum, ok] = tf.tidy(() => {
      const part = (x: tf.Tensor): tf.Tensor => (b === H ? x : rowRange(x, h0, b));
      const kept = tf.gatherND(layer.values, headRowIndex(part(plan.keep), h0));
      const [added, finite] = scanAdd(layer.values, part(plan.source), part(factor), part(plan.targetStart), part(count), K, h0);
      const total = tf.add(kept, added);
      kept.dispose();
      added.dispose();
      return [total, finite];
    });
    blocks.push(sum);
    flags.push(ok);
  }
  factor.dispose();
  const finite = allOf(flags);
  if (!finite) {
    for (const v of blocks) v.dispose();
    return undefined;
  }
  return tf.tidy(() => {
    let values = blocks[0]!;
    if (blocks.length > 1) {
      values = tf.concat(blocks);
      for (const v of blocks) v.dispose();
    }
    const at = headRowIndex(plan.keep);
    const take = (x: tf.Tensor): tf.Tensor => tf.gatherND(x, at);
    return { keys: take(layer.keys), values, positions: take(layer.positions), counts: take(layer.counts), scores: take(layer.scores) };
  });
}

/** Kept slots per block of {@link scanAdd}'s blocked prefix sum. */
const SCAN_BLOCK = 32;

/**
 * {@link rangeAdd} for wasm, whose `Cumsum` along any axis but the last transposes its input twice (244 of
 * 410 ms of CaM at 32 x 4096 x 128 in the profile). The differences are scattered straight into a layout
 * where the prefix sum over kept slots runs over whole rows: kept slot `t` of head `h` is row
 * `(t mod B) * W + h * Jh + floor(t / B)` of a `[B * W, D]` grid (`B` = {@link SCAN_BLOCK}, `Jh` blocks per
 * head, `W` = all blocks + one block that collects the ends past the last target). Seen as `[B, W * D]`,
 * row `u` holds offset `u` of every block, so `B - 1` additions of consecutive rows give every block's
 * running sum (a matMul with a triangular `[B, B]` did the same 4x slower: XNNPACK packs the big operand).
 * The last row holds the block totals, whose exclusive cumsum within each head (`1 / B` of the data) is
 * added as one row, and one gatherND takes the rows back to `[H, K, D]`. Each sum adds at most
 * `B + K / B` terms in float32, fewer than the cumsum's `K`. Big intermediates are disposed as soon as
 * they are used. Returns the sums and a bool scalar: whether every update was finite (else the sums are
 * wrong past the windows, as a cumsum's would be). Call inside `tf.tidy`.
 */
function scanAdd(values: tf.Tensor, source: tf.Tensor, factor: tf.Tensor, targetStart: tf.Tensor, targetCount: tf.Tensor, K: number, firstHead: number): [tf.Tensor, tf.Tensor] {
  const [H, S] = source.shape as [number, number];
  const active = tf.greater(targetCount, tf.scalar(0, 'int32'));
  const D = values.shape[2]!;
  const B = SCAN_BLOCK;
  const Jh = Math.ceil(K / B);
  const J = H * Jh;
  const W = J + 1;
  // Grid rows as float32 (exact below 2^24, checked by the caller; wasm's int32 broadcasting is slow).
  const headBase = tf.reshape(tf.mul(tf.range(0, H, 1, 'float32'), tf.scalar(Jh)), [H, 1]);
  const rowOf = (t: tf.Tensor): tf.Tensor => tf.add(tf.add(tf.mul(tf.mod(t, tf.scalar(B)), tf.scalar(W)), headBase), tf.floor(tf.div(t, tf.scalar(B))));
  const on = active;
  const startF = tf.cast(targetStart, 'float32');
  const endF = tf.add(startF, tf.cast(targetCount, 'float32'));
  const dump = tf.fill([H, S], J);
  const first = tf.where(on, rowOf(startF), dump);
  const last = tf.where(tf.logicalAnd(on, tf.less(endF, tf.scalar(K))), rowOf(endF), dump);
  const rows = tf.reshape(tf.cast(tf.concat([first, last], 1), 'int32'), [2 * H * S, 1]);
  // Each source's value twice per head (+ at its window's first target, - past its last), scaled.
  const f = tf.reshape(factor, [H, S]);
  const signed = tf.reshape(tf.concat([f, tf.neg(f)], 1), [H, 2 * S, 1]);
  const taken = tf.gatherND(values, headRowIndex(tf.concat([source, source], 1), firstHead));
  const update = tf.mul(taken, signed);
  taken.dispose();
  const flatUpdate = tf.reshape(update, [2 * H * S, D]);
  update.dispose();
  const diff = tf.scatterND(rows, flatUpdate, [B * W, D]);
  flatUpdate.dispose();
  const grid = tf.reshape(diff, [B, W * D]);
  diff.dispose();
  // Running sums over the offsets within each block: row u = row u - 1 + offset u's differences.
  const running: tf.Tensor[] = [];
  for (let u = 0; u < B; u++) {
    const row = tf.gatherND(grid, tf.tensor2d([[u]], [1, 1], 'int32'));
    if (u === 0) running.push(row);
    else {
      running.push(tf.add(running[u - 1]!, row));
      row.dispose();
    }
  }
  grid.dispose();
  const totals = tf.reshape(running[B - 1]!, [W, D]);
  // Every update lands in some block (inactive ones, scaled by 0, in the dump block), so the block totals
  // are all finite unless an update is not (an infinity, NaN, or 0 times either); a total that overflows
  // only costs the fallback.
  const finite = tf.logicalNot(tf.any(tf.logicalNot(finiteMask(totals))));
  const carry = tf.cumsum(tf.reshape(firstRows(totals, J), [H, Jh, D]), 1, true);
  const carryRow = tf.concat([tf.reshape(carry, [1, J * D]), tf.zeros([1, D])], 1);
  const blockSums = tf.concat(running);
  for (const r of running) r.dispose();
  const summed = tf.add(blockSums, carryRow);
  blockSums.dispose();
  const t = tf.range(0, K, 1, 'float32');
  const offset = tf.reshape(tf.tile(tf.reshape(tf.mod(t, tf.scalar(B)), [1, K]), [H, 1]), [H * K]);
  const block = tf.reshape(tf.add(headBase, tf.reshape(tf.floor(tf.div(t, tf.scalar(B))), [1, K])), [H * K]);
  const grid3 = tf.reshape(summed, [B, W, D]);
  summed.dispose();
  const added = tf.gatherND(grid3, indexPairs(offset, block, [H, K]));
  grid3.dispose();
  return [added, finite];
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
    // Not on wasm, where the scan checks the values it adds itself (this sum took 40 of 257 ms of CaM there).
    const finite = L > 0 && layer.values.shape[2]! > 0 && tf.getBackend() !== 'wasm' ? tf.logicalNot(tf.any(tf.logicalNot(finiteMask(tf.sum(layer.values, -1))))) : tf.scalar(true, 'bool');
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

