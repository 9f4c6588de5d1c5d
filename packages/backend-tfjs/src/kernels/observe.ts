import * as tf from '@tensorflow/tfjs-core';
import type { GroupReduction, KernelImplementation, ObserveCall, ObservedAttention, ScreenResult } from '@kvfold/core';
import { column, FLOAT_EXACT, head, intColumn, rowRange } from '../ops.js';
import { screened } from '../screen.js';
import { sumLast } from '../sum.js';

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
 * Large problems run head by head: the queries of a kv head's group are 2-D matMuls against its keys
 * (wasm's batched matMul is 9-14x slower than separate 2-D calls), in chunks of at most 256 queries and
 * `block` logits ({@link OBSERVE_BLOCK} by default), whose query sums are added up. Small ones (per-head
 * work up to `batchLimit` multiply-adds, {@link OBSERVE_BATCH_LIMIT} per engine by default) run all
 * heads as one batched program, where the fixed cost of some 40 ops per head would dominate. A chunk
 * whose queries all see every slot skips the causal mask, and one whose queries see none is skipped
 * (decided from the query positions and each head's position range, two small downloads per call).
 * Rows are normalised by matMuls with `1 / total` (see {@link attend}); no `[rows, slots]` division.
 * Called by {@link observeKernelFor} with a validated call; exported for the tests of its blocking.
 */
export function observe(call: ObserveCall<tf.Tensor>, block: number = OBSERVE_BLOCK, batchLimit?: number): ObservedAttention<tf.Tensor> {
  const { layer, queries, queryPositions, dims, queryHeads: QH, n, reduction, scale, proportional } = call;
  const { heads: H, length: L, headDim: D } = dims;
  if (H === 0 || L === 0 || n === 0) return tf.tidy(() => ({ attention: tf.zeros([H, L], 'float32'), lastAttention: tf.zeros([H, L], 'float32') }));
  const G = QH / H;
  // Two tiny downloads (n query positions, one slot-position range per head) let each chunk of queries
  // skip the causal mask when it sees every slot, and skip itself when it sees none.
  const qpos = queryPositions.dataSync() as Int32Array;
  const range = tf.tidy(() => tf.concat([tf.min(layer.positions, 1), tf.max(layer.positions, 1)]));
  const slotRange = range.dataSync() as Int32Array;
  range.dispose();
  const lo = Math.min(...slotRange.subarray(0, H));
  const hi = Math.max(...slotRange.subarray(H));
  // Positions relative to the smallest one, as float32: exact while the cache spans < 2^24 positions,
  // and fast (wasm's int32 broadcasting ops run element by element).
  const exact = hi - lo < FLOAT_EXACT;
  const B = G * n * L * D <= (batchLimit ?? batchLimitFor(tf.getBackend())) ? H : 1;
  const chunk = Math.max(1, Math.min(n, QUERY_CHUNK, Math.floor(block / Math.max(1, B * G * L))));
  return tf.tidy(() => {
    const wasm = tf.getBackend() === 'wasm';
    const c: CallArgs = {
      B, G, D, L, n, wasm,
      // Query rows [QH * n, D]: query head q's queries are rows q * n .. q * n + n - 1.
      q: tf.reshape(queries, [QH * n, D]),
      scale,
      // Keys as the right operand: [H, D, L] on wasm (transposed once, as its transposeB is slow), else [H, L, D].
      right: wasm ? tf.transpose(layer.keys, [0, 2, 1]) : layer.keys,
      slotPos: exact ? tf.cast(tf.sub(layer.positions, tf.scalar(lo, 'int32')), 'float32') : layer.positions,
      bias: proportional ? tf.log(tf.cast(layer.counts, 'float32')) : undefined,
    };
    const templates = new Map<string, tf.Tensor>();
    const sums: tf.Tensor[] = [];
    const lasts: tf.Tensor[] = [];
    for (let h0 = 0; h0 < H; h0 += B) {
      const headLo = Math.min(...slotRange.subarray(h0, h0 + B));
      const headHi = Math.max(...slotRange.subarray(H + h0, H + h0 + B));
      let sum: tf.Tensor = tf.zeros([B, G, L]);
      let last: tf.Tensor = tf.zeros([B, G, L]);
      for (let t0 = 0; t0 < n; t0 += chunk) {
        const tc = Math.min(chunk, n - t0);
        let minQ = qpos[t0]!;
        let maxQ = minQ;
        for (let t = t0 + 1; t < t0 + tc; t++) {
          minQ = Math.min(minQ, qpos[t]!);
          maxQ = Math.max(maxQ, qpos[t]!);
        }
        if (maxQ < headLo) continue; // no query of the chunk sees a slot: zeros (and a zero last row)
        const isLast = t0 + tc === n;
        const key = `${tc},${isLast}`;
        if (!templates.has(key)) templates.set(key, lineTemplate(G, tc, isLast));
        const rel = minQ < headHi ? tf.tidy(() => rowPositions(queryPositions, t0, tc, G, exact ? lo : undefined, hi - lo)) : undefined;
        const [chunkSum, chunkLast] = tf.tidy(() => attend(c, h0, t0, tc, templates.get(key)!, rel, isLast));
        rel?.dispose();
        const previous = sum;
        sum = tf.add(previous, chunkSum);
        previous.dispose();
        chunkSum.dispose();
        if (chunkLast) {
          last.dispose();
          last = chunkLast;
        }
      }
      sums.push(reduceGroup(sum, reduction));
      lasts.push(reduceGroup(last, reduction));
    }
    return { attention: sums.length === 1 ? sums[0]! : tf.concat(sums), lastAttention: lasts.length === 1 ? lasts[0]! : tf.concat(lasts) };
  });
}

/**
 * The observe kernel with logits blocks of at most `block` elements. Proportional attention takes
 * `log(count)`, so its screen checks that every count is >= 1 on the backend (one scalar download).
 */
export function observeKernelFor(block: number): KernelImplementation<ObserveCall<tf.Tensor>, ObservedAttention<tf.Tensor>> {
  return { screen: screenCounts, run: (call) => observe(call, block) };
}

function screenCounts({ layer, dims, proportional }: ObserveCall<tf.Tensor>): ScreenResult {
  if (!proportional || dims.heads * dims.length === 0) return { valid: true };
  return screened(() => tf.less(tf.min(layer.counts), 1));
}

/** Queries per chunk and group member: bounds the length of the float32 query sums done by one matMul. */
const QUERY_CHUNK = 256;

/**
 * Per-head work (`group * queries * length * headDim` multiply-adds) up to which all heads run as one
 * batched program instead of head by head with 2-D matMuls. Head by head costs about 40 tfjs ops per
 * head, each with a fixed overhead of tens of microseconds, which dominates small problems; batched, wasm's
 * matMul is 9-14x slower per element and cpu's broadcasting ops about 10x, which dominates large ones.
 */
export const OBSERVE_BATCH_LIMIT: Readonly<Record<'wasm' | 'cpu' | 'tensorflow', number>> = { wasm: 1 << 22, cpu: 1 << 16, tensorflow: 1 << 24 };

/** The batch limit of an engine name (cpu's for an unknown one). */
function batchLimitFor(engine: string): number {
  return engine === 'wasm' || engine === 'cpu' || engine === 'tensorflow' ? OBSERVE_BATCH_LIMIT[engine] : OBSERVE_BATCH_LIMIT.cpu;
}

/** Largest finite float32: the softmax shift of a row that sees no slot. */
const FLT_MAX = 3.4028234663852886e38;

/** What every chunk of one call shares. */
interface CallArgs {
  /** Heads per program: all `H` (batched) or 1. */
  readonly B: number;
  readonly G: number;
  readonly D: number;
  readonly L: number;
  readonly n: number;
  readonly wasm: boolean;
  /** Query rows `[queryHeads * n, D]`. */
  readonly q: tf.Tensor;
  /** Logit scale. */
  readonly scale: number;
  /** Keys `[H, D, L]` on wasm, else `[H, L, D]`. */
  readonly right: tf.Tensor;
  /** Slot positions `[H, L]`: float32 relative to the smallest, or int32 when the span is too large for float32. */
  readonly slotPos: tf.Tensor;
  /** `log(count)` `[H, L]` when proportional. */
  readonly bias: tf.Tensor | undefined;
}

/**
 * Position + 1 of each row of a chunk, ordered (group member, query) — row `g * tc + t` is query
 * `t0 + t` — as float32 relative to `base` (clamped into `[-1, span + 1]`, which keeps them small
 * integers without changing any comparison), or int32 when `base` is undefined. Call inside `tf.tidy`.
 */
function rowPositions(queryPositions: tf.Tensor, t0: number, tc: number, G: number, base: number | undefined, span: number): tf.Tensor {
  const chunkPos = tf.slice(queryPositions, [t0], [tc]);
  const rows = G === 1 ? chunkPos : tf.tile(chunkPos, [G]);
  if (base === undefined) return tf.add(rows, tf.scalar(1, 'int32'));
  return tf.cast(tf.add(tf.clipByValue(tf.sub(rows, tf.scalar(base, 'int32')), -1, span + 1), tf.scalar(1, 'int32')), 'float32');
}

/**
 * Selection lines `[G, R]` (or `[2G, R]` for the last chunk) of a chunk of `tc` queries, rows ordered
 * (group member, query): line g is 1 on group member g's rows, and in the last chunk line G + g is 1 on
 * its last query's row. Call inside `tf.tidy`.
 */
function lineTemplate(G: number, tc: number, isLast: boolean): tf.Tensor {
  const r = tf.range(0, G * tc, 1, 'int32');
  const g = tf.reshape(tf.range(0, G, 1, 'int32'), [G, 1]);
  const lines = [tf.equal(tf.floorDiv(r, tf.scalar(tc, 'int32')), g)];
  if (isLast) lines.push(tf.equal(r, tf.add(tf.mul(g, tf.scalar(tc, 'int32')), tf.scalar(tc - 1, 'int32'))));
  return tf.cast(tf.concat(lines), 'float32');
}

/**
 * Softmax attention of one chunk of queries for heads `h0 .. h0 + B - 1`: returns the sum over the
 * chunk's queries of the probabilities `[B, G, L]`, and (last chunk) the last query's probabilities.
 * `rel` (rows' positions + 1, see {@link rowPositions}) is given when some row does not see every slot.
 *
 * Rows are normalised without dividing the `[R, L]` matrix: the query sums (and the last row) are one
 * matMul of the selection lines scaled by `1 / total` of each row with the exponentials. Zeros add
 * exactly nothing, so each output is the reference's single product `e * (1 / total)` up to the float32
 * rounding of the sums. Call inside `tf.tidy`.
 */
function attend(c: CallArgs, h0: number, t0: number, tc: number, lines: tf.Tensor, rel: tf.Tensor | undefined, isLast: boolean): [tf.Tensor, tf.Tensor | undefined] {
  const { B, G, D, L, n } = c;
  const R = G * tc;
  let logits: tf.Tensor;
  let slotPos: tf.Tensor;
  let bias: tf.Tensor | undefined;
  if (B === 1) {
    // Rows ordered (group member, query): r = g * tc + t holds query t0 + t of query head h0 * G + g.
    const parts = Array.from({ length: G }, (_, g) => rowRange(c.q, (h0 * G + g) * n + t0, tc));
    const rows = G === 1 ? parts[0]! : tf.concat(parts);
    const right = head(c.right, h0);
    logits = c.wasm ? tf.matMul(scaled(rows, c), right) : tf.matMul(scaled(rows, c), right, false, true);
    slotPos = head(c.slotPos, h0);
    bias = c.bias ? head(c.bias, h0) : undefined;
  } else {
    // All heads: rows (head, group member, query) are the queries' own order when the chunk is all of
    // them; otherwise one row range per query head.
    const QH = B * G;
    const rows = tc === n ? c.q : tf.concat(Array.from({ length: QH }, (_, q) => rowRange(c.q, q * n + t0, tc)));
    logits = tf.matMul(tf.reshape(scaled(rows, c), [B, R, D]), c.right, false, !c.wasm);
    slotPos = tf.reshape(c.slotPos, [B, 1, L]);
    bias = c.bias ? tf.reshape(c.bias, [B, 1, L]) : undefined;
  }
  if (D > L) logits = tf.mul(logits, tf.scalar(c.scale));
  if (bias) logits = tf.add(logits, bias);
  if (rel) {
    // d = (p_row + 1) - p_slot; clip(d, 0, 1) is 1 where the slot is visible (d >= 1) and 0 where not.
    const d = B === 1 ? tf.sub(rel.dtype === 'float32' ? column(rel, L) : intColumn(rel, L), slotPos) : tf.sub(tf.reshape(rel, [1, R, 1]), slotPos);
    const open = rel.dtype === 'float32' ? tf.clipByValue(d, 0, 1) : tf.cast(tf.greater(d, tf.scalar(0, 'int32')), 'float32');
    // log(1) = 0 keeps a visible logit, log(0) = -Infinity masks it: no scalar-branch where().
    logits = tf.add(logits, tf.log(open));
  }
  // A row that sees nothing has max -Infinity; a finite shift keeps its exponentials at exactly 0.
  const shift = tf.maximum(tf.max(logits, -1), tf.scalar(-FLT_MAX));
  const e = tf.exp(B === 1 ? tf.sub(logits, column(shift, L)) : tf.sub(logits, tf.expandDims(shift, -1)));
  // A row that sees a slot has total >= 1 (its maximum contributes exp(0)); one that sees none has
  // only zeros, which any finite factor leaves at 0.
  const inv = tf.div(tf.scalar(1), tf.maximum(sumLast(tf.reshape(e, [B * R, L])), tf.scalar(1)));
  const out = B === 1 ? tf.reshape(tf.matMul(tf.mul(lines, inv), e), [1, -1, L]) : tf.matMul(tf.mul(lines, tf.reshape(inv, [B, 1, R])), e);
  if (!isLast) return [out, undefined];
  return [tf.slice(out, [0, 0, 0], [B, G, L]), tf.slice(out, [0, G, 0], [B, G, L])];
}

/** Query rows times the logit scale, when that is the smaller product (else the logits are scaled). */
function scaled(rows: tf.Tensor, c: CallArgs): tf.Tensor {
  return c.D > c.L ? rows : tf.mul(rows, tf.scalar(c.scale));
}

/** Reduce `[B, G, L]` over each group's query heads like the reference (mean = sum / G) → `[B, L]`. */
function reduceGroup(x: tf.Tensor, reduction: GroupReduction): tf.Tensor {
  const [B, G, L] = x.shape as [number, number, number];
  if (G === 1) return tf.reshape(x, [B, L]);
  if (reduction === 'max') return tf.max(x, 1);
  const total = tf.sum(x, 1);
  return reduction === 'mean' ? tf.div(total, tf.scalar(G)) : total;
}
