import { ShapeError, type HostTensor, type LayerCache, type SegmentPlan } from '@kvfold/core';
import { badOption, expectShape, f32, i32, layerData, tensorData } from '../validate.js';

/**
 * Collapse runs of slots into one slot each (KVMerger). For output slot `o` of head `h`, the members
 * are the input slots with `segment = o`, `p = pivot[h, o]`:
 * `g_i = exp(-||k_p - k_i||^2 / (2 sigma^2))`, `w_i = g_i / sum g`, key = `sum w_i k_i`,
 * value = `C * sum w_i v_i / c_i` with `C = sum c_i` (`valueScale: 'count'`) or `sum w_i v_i` (`'none'`),
 * position = `positions[p]`, count = `C`, score = sum of member scores. Slots with segment `-1` are dropped.
 *
 * Distances, weights and sums accumulate in float64 and are rounded to float32 once per output element.
 * @throws ShapeError when the plan's shapes disagree with the layer, segment ids are not non-decreasing
 *   from 0 without gaps, a pivot is not a member of its run, sigma is not > 0, or (`count` mode) a member count is < 1.
 * @throws ConfigError when `valueScale` is not `count` or `none`.
 */
export function mergeSegments(layer: LayerCache<HostTensor>, plan: SegmentPlan<HostTensor>): LayerCache<HostTensor> {
  const l = layerData(layer, 'mergeSegments');
  const { heads: H, length: L, headDim: D } = l;
  if (typeof plan !== 'object' || plan === null) throw new ShapeError('mergeSegments: plan must be a SegmentPlan object', { field: 'plan' });
  const seg = tensorData(plan.segment, 'mergeSegments plan.segment', 'int32', 2);
  expectShape(plan.segment.shape, [H, L], 'mergeSegments plan.segment');
  const piv = tensorData(plan.pivot, 'mergeSegments plan.pivot', 'int32', 2);
  const M = plan.pivot.shape[1]!;
  expectShape(plan.pivot.shape, [H, M], 'mergeSegments plan.pivot');
  const sig = tensorData(plan.sigma, 'mergeSegments plan.sigma', 'float32', 2);
  expectShape(plan.sigma.shape, [H, M], 'mergeSegments plan.sigma');
  const scale = plan.valueScale;
  if (scale !== 'count' && scale !== 'none') {
    badOption('mergeSegments plan', '/valueScale', 'enum', `must be one of "count", "none"; got ${JSON.stringify(scale)}`, ['count', 'none']);
  }
  const byCount = scale === 'count';

  // Validation also records each run's [start, end) so the merge loops need no search.
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
      if (byCount && l.counts[h * L + i]! < 1) {
        throw new ShapeError(`mergeSegments layer.counts[${h}, ${i}] = ${l.counts[h * L + i]} must be >= 1 with valueScale "count"`, { field: 'layer.counts', head: h, index: i });
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
      if (!(sg > 0)) {
        throw new ShapeError(`mergeSegments plan.sigma[${h}, ${o}] = ${sg} must be > 0`, { field: 'plan.sigma', head: h, index: o, value: sg });
      }
    }
  }

  const keys = l.keys;
  const values = l.values;
  const outK = new Float32Array(H * M * D);
  const outV = new Float32Array(H * M * D);
  const outP = new Int32Array(H * M);
  const outC = new Int32Array(H * M);
  const outS = new Float32Array(H * M);
  const g = new Float64Array(L);
  const accK = new Float64Array(D);
  const accV = new Float64Array(D);
  for (let h = 0; h < H; h++) {
    const rowBase = h * L;
    for (let o = 0; o < M; o++) {
      const ho = h * M + o;
      const st = start[ho]!;
      const en = end[ho]!;
      const p = rowBase + piv[ho]!;
      const pk = p * D;
      const sg = sig[ho]!;
      const twoSigma2 = 2 * sg * sg;
      let sumG = 0;
      let total = 0;
      let score = 0;
      for (let i = st; i < en; i++) {
        const r = rowBase + i;
        if (seg[r] !== o) continue;
        const ik = r * D;
        let d2 = 0;
        for (let d = 0; d < D; d++) {
          const x = keys[pk + d]! - keys[ik + d]!;
          d2 += x * x;
        }
        // d2 = 0 short-circuits so the pivot weighs exactly 1 even when 2 sigma^2 underflows to 0.
        const gi = d2 === 0 ? 1 : Math.exp(-d2 / twoSigma2);
        g[i] = gi;
        sumG += gi;
        total += l.counts[r]!;
        score += l.scores[r]!;
      }
      accK.fill(0);
      accV.fill(0);
      const inv = 1 / sumG;
      for (let i = st; i < en; i++) {
        const r = rowBase + i;
        if (seg[r] !== o) continue;
        const w = g[i]! * inv;
        const wv = byCount ? w / l.counts[r]! : w;
        const ik = r * D;
        for (let d = 0; d < D; d++) {
          accK[d] += w * keys[ik + d]!;
          accV[d] += wv * values[ik + d]!;
        }
      }
      const vScale = byCount ? total : 1;
      const od = ho * D;
      for (let d = 0; d < D; d++) {
        outK[od + d] = accK[d]!;
        outV[od + d] = vScale * accV[d]!;
      }
      outP[ho] = l.positions[p]!;
      outC[ho] = total;
      outS[ho] = score;
    }
  }
  return {
    keys: f32([H, M, D], outK),
    values: f32([H, M, D], outV),
    positions: i32([H, M], outP),
    counts: i32([H, M], outC),
    scores: f32([H, M], outS),
  };
}
