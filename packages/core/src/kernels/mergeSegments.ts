import { ShapeError } from '../errors.js';
import { badOption } from '../kernel-check.js';
import { defineKernel, type HostReader } from '../kernel-definition.js';
import type { LayerCache, SegmentPlan } from '../kernels.js';
import type { HostTensor } from '../tensor.js';
import { hostLayerOf, layerArrays, layerData, type LayerCall } from './host.js';

/** A validated {@link KVKernels.mergeSegments} call. */
export interface MergeSegmentsCall<T = unknown> extends LayerCall<T> {
  /** The plan. */
  readonly plan: SegmentPlan<T>;
  /** Output slots per head. */
  readonly outLength: number;
  /** `valueScale === 'count'`. */
  readonly byCount: boolean;
}

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
export const mergeSegmentsKernel = defineKernel({
  name: 'mergeSegments',
  description: 'KVMerger: collapse runs of consecutive slots into one slot each with Gaussian-kernel weights around a pivot.',
  validate(check, layer: LayerCache<unknown>, plan: SegmentPlan<unknown>): MergeSegmentsCall {
    const dims = check.layer(layer, 'mergeSegments');
    const { heads: H, length: L } = dims;
    check.object(plan, 'mergeSegments: plan', 'SegmentPlan');
    check.shaped(plan.segment, 'mergeSegments plan.segment', 'int32', [H, L]);
    const M = check.columns(plan.pivot, 'mergeSegments plan.pivot', 'int32', H);
    check.shaped(plan.sigma, 'mergeSegments plan.sigma', 'float32', [H, M]);
    const scale = plan.valueScale;
    if (scale !== 'count' && scale !== 'none') {
      badOption('mergeSegments plan', '/valueScale', 'enum', `must be one of "count", "none"; got ${JSON.stringify(scale)}`, ['count', 'none']);
    }
    return { layer, plan, dims, outLength: M, byCount: scale === 'count' };
  },
  contents: checkPlan,
  reference: mergeSegments,
});

/**
 * The plan's contents, walked in slot order per head: ids `-1` or non-decreasing from 0 without gaps,
 * as many runs as `pivot` has output slots, each pivot a member of its run, sigma > 0, and (`count`
 * mode) member counts >= 1. Throws for the first problem.
 */
function checkPlan({ layer, plan, dims, outLength: M, byCount }: MergeSegmentsCall, read: HostReader): void {
  const { heads: H, length: L } = dims;
  const seg = read(plan.segment).data;
  const piv = read(plan.pivot).data;
  const sig = read(plan.sigma).data;
  const counts = byCount ? read(layer.counts).data : undefined;
  const { start, end } = runBounds(seg, H, L, M, (h, i, s, prev) => {
    if (s !== prev + 1) {
      const why = s < -1 ? 'ids must be >= -1' : s < prev ? 'kept ids must be non-decreasing' : `ids must cover 0..${M - 1} without gaps (expected ${prev + 1})`;
      throw new ShapeError(`mergeSegments plan.segment[${h}, ${i}] = ${s}: ${why}`, { field: 'plan.segment', head: h, index: i, value: s });
    }
    if (s >= M) {
      throw new ShapeError(`mergeSegments plan.segment[${h}, ${i}] = ${s} but plan.pivot has ${M} output slots (ids must be in [-1, ${M - 1}])`, {
        field: 'plan.segment', head: h, index: i, value: s, allowed: [-1, M - 1],
      });
    }
  }, (h, i) => {
    if (counts && counts[h * L + i]! < 1) {
      throw new ShapeError(`mergeSegments layer.counts[${h}, ${i}] = ${counts[h * L + i]} must be >= 1 with valueScale "count"`, { field: 'layer.counts', head: h, index: i });
    }
  });
  for (let h = 0; h < H; h++) {
    let last = -1;
    for (let i = 0; i < L; i++) if (seg[h * L + i]! >= 0) last = seg[h * L + i]!;
    if (last !== M - 1) {
      throw new ShapeError(`mergeSegments plan.segment head ${h} uses output slots 0..${last} but plan.pivot has ${M}; every head must produce the same number of slots`, {
        field: 'plan.segment', head: h, outputs: last + 1, expected: M,
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
}

/**
 * Each run's `[start, end)` slots, `[H * M]` each. `onNewId(h, i, id, previous)` sees every slot that
 * starts a new run and `onMember(h, i)` every kept slot, so the content check walks the plan once.
 */
function runBounds(
  seg: ArrayLike<number>,
  H: number,
  L: number,
  M: number,
  onNewId?: (h: number, i: number, id: number, previous: number) => void,
  onMember?: (h: number, i: number) => void,
): { start: Int32Array; end: Int32Array } {
  const start = new Int32Array(H * M);
  const end = new Int32Array(H * M);
  for (let h = 0; h < H; h++) {
    let prev = -1;
    for (let i = 0; i < L; i++) {
      const s = seg[h * L + i]!;
      if (s === -1) continue;
      if (s !== prev) {
        onNewId?.(h, i, s, prev);
        prev = s;
        start[h * M + s] = i;
      }
      end[h * M + s] = i + 1;
      onMember?.(h, i);
    }
  }
  return { start, end };
}

function mergeSegments({ layer, plan, dims, outLength: M, byCount }: MergeSegmentsCall<HostTensor>): LayerCache<HostTensor> {
  const l = layerData(layer, dims);
  const { heads: H, length: L, headDim: D } = l;
  const seg = plan.segment.data as Int32Array;
  const piv = plan.pivot.data as Int32Array;
  const sig = plan.sigma.data as Float32Array;
  const { start, end } = runBounds(seg, H, L, M);

  const keys = l.keys;
  const values = l.values;
  const { keys: outK, values: outV, positions: outP, counts: outC, scores: outS } = layerArrays(H, M, D);
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
  return hostLayerOf(H, M, D, { keys: outK, values: outV, positions: outP, counts: outC, scores: outS });
}
