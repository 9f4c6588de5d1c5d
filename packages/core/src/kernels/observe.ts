import { ShapeError } from '../errors.js';
import { badOption, expectPositiveCounts } from '../kernel-check.js';
import { defineKernel } from '../kernel-definition.js';
import type { GroupReduction, LayerCache, ObservedAttention, ObserveOptions } from '../kernels.js';
import type { HostTensor } from '../tensor.js';
import { f32, layerData, type LayerCall } from './host.js';

const REDUCTIONS: readonly GroupReduction[] = ['mean', 'max', 'sum'];

/** Float64 logits held at once (2 MiB): enough rows per chunk to reuse each key, small enough for L2. */
const LOGIT_BUDGET = 1 << 18;

/** A validated {@link KVKernels.observe} call, options resolved. */
export interface ObserveCall<T = unknown> extends LayerCall<T> {
  /** float32 `[queryHeads, n, headDim]`. */
  readonly queries: T;
  /** int32 `[n]`. */
  readonly queryPositions: T;
  /** Query heads. */
  readonly queryHeads: number;
  /** Queries per head. */
  readonly n: number;
  /** Reduction over a group's query heads. */
  readonly reduction: GroupReduction;
  /** Logit scale. */
  readonly scale: number;
  /** Whether `log(count)` is added to each logit. */
  readonly proportional: boolean;
}

/**
 * Causal softmax attention of `queries` float32 `[queryHeads, n, headDim]` over the cache, reduced to kv heads.
 *
 * Query `t` at position `queryPositions[t]` sees slots whose position is `<=` it; logits are
 * `scale * q.k` (+ `log(count)` when `proportional`), softmax is max-subtracted, and a query that sees
 * no slot contributes zeros. Query head `q` belongs to kv head `floor(q / (queryHeads / kvHeads))`.
 * `attention` = per query head, the sum over queries of the probabilities; `lastAttention` = the last query's
 * probabilities; both then reduced over each group's query heads by `groupReduction` (mean/max/sum).
 * Dot products, softmax and sums run in float64.
 * @throws ShapeError when shapes disagree, queryHeads is not a positive multiple of kvHeads, or
 *   (`proportional`) a count is < 1.
 * @throws ConfigError when an option is invalid (reduction not mean/max/sum, scale not finite, proportional not boolean).
 */
export const observeKernel = defineKernel({
  name: 'observe',
  description: 'Causal softmax attention of queries over the cache, reduced to kv heads: the sum over the queries and the last query alone.',
  validate(check, layer: LayerCache<unknown>, queries: unknown, queryPositions: unknown, options: ObserveOptions = {}): ObserveCall {
    const dims = check.layer(layer, 'observe');
    const { heads: H, headDim: D } = dims;
    const [QH, n] = check.tensor(queries, 'observe queries', 'float32', 3) as [number, number, number];
    check.shaped(queries, 'observe queries', 'float32', [QH, n, D]);
    if (H === 0 ? QH !== 0 : QH === 0 || QH % H !== 0) {
      throw new ShapeError(`observe queries has ${QH} query heads, which is not a positive multiple of the layer's ${H} kv heads`, {
        field: 'queries', queryHeads: QH, kvHeads: H,
      });
    }
    check.shaped(queryPositions, 'observe queryPositions', 'int32', [n]);
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
    return { layer, queries, queryPositions, dims, queryHeads: QH, n, reduction, scale, proportional };
  },
  contents({ layer, dims, proportional }, read) {
    if (proportional) expectPositiveCounts(read(layer.counts).data, dims.length, 'observe layer.counts', '(proportional attention takes log(count))');
  },
  reference: observe,
});

function observe({ layer, queries, queryPositions, dims, queryHeads: QH, n, reduction, scale, proportional }: ObserveCall<HostTensor>): ObservedAttention<HostTensor> {
  const l = layerData(layer, dims);
  const { heads: H, length: L, headDim: D } = l;
  const qd = queries.data as Float32Array;
  const qpos = queryPositions.data as Int32Array;
  const G = H === 0 ? 0 : QH / H;
  const isMax = reduction === 'max';
  const keys = l.keys;
  const pos = l.positions;
  const outSums = new Float32Array(H * L);
  const outLast = new Float32Array(H * L);
  // The G query heads of a kv head are one contiguous [G * n, D] block of "rows" (row r = g * n + t).
  // Rows are processed in chunks so each key is loaded once per chunk and scored against every row of
  // it while it sits in L1: the key matrix is streamed ceil(G * n / chunk) times instead of G * n times.
  const R = G * n;
  const chunk = Math.max(1, Math.min(R, Math.floor(LOGIT_BUDGET / Math.max(L, 1))));
  const logit = new Float64Array(chunk * L);
  const rowPos = new Int32Array(chunk);
  const bias = new Float64Array(L);
  const qSum = new Float64Array(G * L);
  const qLast = new Float64Array(G * L);
  for (let h = 0; h < H; h++) {
    const rowBase = h * L;
    const qBase = h * R * D;
    if (proportional) for (let j = 0; j < L; j++) bias[j] = Math.log(l.counts[rowBase + j]!);
    qSum.fill(0);
    qLast.fill(0);
    for (let r0 = 0; r0 < R; r0 += chunk) {
      const rc = Math.min(chunk, R - r0);
      for (let c = 0; c < rc; c++) rowPos[c] = qpos[(r0 + c) % n]!;
      for (let j = 0; j < L; j++) {
        const pj = pos[rowBase + j]!;
        const ko = (rowBase + j) * D;
        const bj = bias[j]!;
        for (let c = 0; c < rc; c++) {
          if (pj > rowPos[c]!) {
            logit[c * L + j] = -Infinity;
            continue;
          }
          const qo = qBase + (r0 + c) * D;
          // Four accumulators break the add dependency chain (several times faster than one for D >= 32).
          let s0 = 0;
          let s1 = 0;
          let s2 = 0;
          let s3 = 0;
          let d = 0;
          for (; d + 3 < D; d += 4) {
            s0 += qd[qo + d]! * keys[ko + d]!;
            s1 += qd[qo + d + 1]! * keys[ko + d + 1]!;
            s2 += qd[qo + d + 2]! * keys[ko + d + 2]!;
            s3 += qd[qo + d + 3]! * keys[ko + d + 3]!;
          }
          for (; d < D; d++) s0 += qd[qo + d]! * keys[ko + d]!;
          logit[c * L + j] = scale * (s0 + s1 + (s2 + s3)) + bj;
        }
      }
      for (let c = 0; c < rc; c++) {
        const row = r0 + c;
        const g = Math.floor(row / n);
        const t = row - g * n;
        const lo = c * L;
        let max = -Infinity;
        for (let j = 0; j < L; j++) if (logit[lo + j]! > max) max = logit[lo + j]!;
        if (max === -Infinity) continue; // sees no slot: contributes zeros (qLast stays 0 for the last query)
        let sum = 0;
        for (let j = 0; j < L; j++) {
          const z = logit[lo + j]!;
          const e = z === -Infinity ? 0 : Math.exp(z - max);
          logit[lo + j] = e;
          sum += e;
        }
        const inv = 1 / sum;
        const go = g * L;
        for (let j = 0; j < L; j++) qSum[go + j] += logit[lo + j]! * inv;
        if (t === n - 1) for (let j = 0; j < L; j++) qLast[go + j] = logit[lo + j]! * inv;
      }
    }
    const div = reduction === 'mean' ? G : 1;
    for (let j = 0; j < L; j++) {
      let a = qSum[j]!;
      let b = qLast[j]!;
      for (let g = 1; g < G; g++) {
        const x = qSum[g * L + j]!;
        const y = qLast[g * L + j]!;
        if (isMax) {
          if (x > a) a = x;
          if (y > b) b = y;
        } else {
          a += x;
          b += y;
        }
      }
      outSums[rowBase + j] = a / div;
      outLast[rowBase + j] = b / div;
    }
  }
  return { attention: f32([H, L], outSums), lastAttention: f32([H, L], outLast) };
}
