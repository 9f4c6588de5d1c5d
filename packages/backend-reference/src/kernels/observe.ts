import { ShapeError, type GroupReduction, type HostTensor, type LayerCache, type ObserveOptions, type ObservedAttention } from '@kvfold/core';
import { badOption, expectPositiveCounts, expectShape, f32, layerData, tensorData } from '../validate.js';

const REDUCTIONS: readonly GroupReduction[] = ['mean', 'max', 'sum'];

/**
 * Causal softmax attention of `queries` float32 `[queryHeads, n, headDim]` over the cache, reduced to kv heads.
 *
 * Query `t` at position `queryPositions[t]` sees slots whose position is `<=` it; logits are
 * `scale * q.k` (+ `log(count)` when `proportional`), softmax is max-subtracted, and a query that sees
 * no slot contributes zeros. Query head `q` belongs to kv head `floor(q / (queryHeads / kvHeads))`.
 * `sums` = per query head, the sum over queries of the probabilities; `last` = the last query's
 * probabilities; both then reduced over each group's query heads by `groupReduction` (mean/max/sum).
 * Dot products, softmax and sums run in float64.
 * @throws ShapeError when shapes disagree, queryHeads is not a positive multiple of kvHeads, or
 *   (`proportional`) a count is < 1.
 * @throws ConfigError when an option is invalid (reduction not mean/max/sum, scale not finite, proportional not boolean).
 */
export function observe(
  layer: LayerCache<HostTensor>,
  queries: HostTensor,
  queryPositions: HostTensor,
  options: ObserveOptions = {},
): ObservedAttention<HostTensor> {
  const l = layerData(layer, 'observe');
  const { heads: H, length: L, headDim: D } = l;
  const qd = tensorData(queries, 'observe queries', 'float32', 3);
  const [QH, n] = queries.shape as [number, number, number];
  expectShape(queries.shape, [QH, n, D], 'observe queries');
  if (H === 0 ? QH !== 0 : QH === 0 || QH % H !== 0) {
    throw new ShapeError(`observe queries has ${QH} query heads, which is not a positive multiple of the layer's ${H} kv heads`, {
      field: 'queries', queryHeads: QH, kvHeads: H,
    });
  }
  const qpos = tensorData(queryPositions, 'observe queryPositions', 'int32', 1);
  expectShape(queryPositions.shape, [n], 'observe queryPositions');
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
  if (proportional) expectPositiveCounts(l.counts, L, 'observe layer.counts (proportional attention takes log(count))');

  const G = H === 0 ? 0 : QH / H;
  const isMax = reduction === 'max';
  const keys = l.keys;
  const pos = l.positions;
  const outSums = new Float32Array(H * L);
  const outLast = new Float32Array(H * L);
  const logit = new Float64Array(L);
  const bias = new Float64Array(L);
  const qSum = new Float64Array(L);
  const qLast = new Float64Array(L);
  const gSum = new Float64Array(L);
  const gLast = new Float64Array(L);
  for (let h = 0; h < H; h++) {
    const rowBase = h * L;
    if (proportional) for (let j = 0; j < L; j++) bias[j] = Math.log(l.counts[rowBase + j]!);
    gSum.fill(isMax ? -Infinity : 0);
    gLast.fill(isMax ? -Infinity : 0);
    for (let q = h * G; q < (h + 1) * G; q++) {
      qSum.fill(0);
      qLast.fill(0);
      for (let t = 0; t < n; t++) {
        const p = qpos[t]!;
        const qo = (q * n + t) * D;
        let max = -Infinity;
        for (let j = 0; j < L; j++) {
          if (pos[rowBase + j]! > p) {
            logit[j] = -Infinity;
            continue;
          }
          const ko = (rowBase + j) * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += qd[qo + d]! * keys[ko + d]!;
          const z = scale * dot + bias[j]!;
          logit[j] = z;
          if (z > max) max = z;
        }
        if (max === -Infinity) continue; // sees no slot: contributes zeros (qLast stays 0 for the last query)
        let sum = 0;
        for (let j = 0; j < L; j++) {
          const z = logit[j]!;
          const e = z === -Infinity ? 0 : Math.exp(z - max);
          logit[j] = e;
          sum += e;
        }
        const inv = 1 / sum;
        for (let j = 0; j < L; j++) qSum[j] += logit[j]! * inv;
        if (t === n - 1) for (let j = 0; j < L; j++) qLast[j] = logit[j]! * inv;
      }
      if (isMax) {
        for (let j = 0; j < L; j++) {
          if (qSum[j]! > gSum[j]!) gSum[j] = qSum[j]!;
          if (qLast[j]! > gLast[j]!) gLast[j] = qLast[j]!;
        }
      } else {
        for (let j = 0; j < L; j++) {
          gSum[j] += qSum[j]!;
          gLast[j] += qLast[j]!;
        }
      }
    }
    const div = reduction === 'mean' ? G : 1;
    for (let j = 0; j < L; j++) {
      outSums[rowBase + j] = gSum[j]! / div;
      outLast[rowBase + j] = gLast[j]! / div;
    }
  }
  return { sums: f32([H, L], outSums), last: f32([H, L], outLast) };
}
