import { ShapeError } from '../errors.js';
import { badOption } from '../kernel-check.js';
import { defineKernel, type HostReader } from '../kernel-definition.js';
import type { LayerCache, SegmentPlan } from '../kernels.js';
import type { HostTensor } from '../tensor.js';
import { copySlots, hostLayerOf, layerArrays, layerData, type HostAllocator, type LayerCall, type LayerData } from './host.js';

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
  if (planPasses(seg, piv, sig, counts, H, L, M)) return;
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
 * Whether the plan passes every check of {@link checkPlan}, without naming the problem: one pass per head
 * with no data-dependent branch (run boundaries fall wherever the merged links do, so a branch per boundary
 * mispredicts about every other slot), as the wasm kernels' screen does. A kept slot's id must step by 0 or 1
 * from the previous kept one (one unsigned compare, which also refuses ids below -1) and ids that only step
 * by one from -1 and end at `M - 1` never exceed it. The detailed walk runs only when this fails, to name the
 * first problem: at 32 x 4,096 (16,384) slots with counts the walk took 2.3 (8.5) ms, this 0.46 (1.8) ms, and onnx
 * runs it on every KVMerger prefill.
 */
function planPasses(seg: ArrayLike<number>, piv: ArrayLike<number>, sig: ArrayLike<number>, counts: ArrayLike<number> | undefined, H: number, L: number, M: number): boolean {
  // Without counts to check, the segment ids stand in for them against a minimum nothing is below.
  const c = counts ?? seg;
  const minCount = counts ? 1 : -Infinity;
  for (let h = 0; h < H; h++) {
    const base = h * L;
    let prev = -1;
    let bad = 0;
    for (let i = base, end = base + L; i < end; i++) {
      const s = seg[i]!;
      const kept = +(s !== -1);
      bad |= kept & (+((s - prev) >>> 0 > 1) | +(c[i]! < minCount));
      prev += kept * (s - prev);
    }
    if (bad !== 0 || prev !== M - 1) return false;
    for (let o = 0; o < M; o++) {
      const p = piv[h * M + o]!;
      if (!(p >= 0 && p < L && seg[base + p] === o && sig[h * M + o]! > 0)) return false;
    }
  }
  return true;
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

function mergeSegments({ layer, plan, dims, outLength: M, byCount }: MergeSegmentsCall<HostTensor>, alloc?: HostAllocator): LayerCache<HostTensor> {
  const l = layerData(layer, dims);
  const { heads: H, length: L, headDim: D, positions, counts, scores } = l;
  const seg = plan.segment.data as Int32Array;
  const piv = plan.pivot.data as Int32Array;
  const sig = plan.sigma.data as Float32Array;
  const { start, end } = runBounds(seg, H, L, M);
  const out = layerArrays(H, M, D, alloc);
  const { positions: outP, counts: outC, scores: outS } = out;
  const scratch: RunScratch = { rows: new Int32Array(L), weights: new Float64Array(L), valueWeights: new Float64Array(L) };
  for (let h = 0; h < H; h++) {
    const rowBase = h * L;
    let o = 0;
    while (o < M) {
      const ho = h * M + o;
      const st = start[ho]!;
      if (end[ho]! - st === 1) {
        // A run of one-slot segments is the input rows unchanged (weight 1; in `count` mode the count
        // times the value over the same count rounds back to the value): one row copy per field.
        let n = 1;
        while (o + n < M && end[ho + n]! - start[ho + n]! === 1 && start[ho + n] === st + n) n++;
        copySlots(l, rowBase + st, out, ho, n);
        o += n;
        continue;
      }
      let total = 0;
      let score = 0;
      for (let i = st; i < end[ho]!; i++) {
        const r = rowBase + i;
        if (seg[r] !== o) continue;
        total += counts[r]!;
        score += scores[r]!;
      }
      mergeRun(l, seg, rowBase, o, st, end[ho]!, rowBase + piv[ho]!, sig[ho]!, byCount ? total : 0, out, ho * D, scratch);
      outP[ho] = positions[rowBase + piv[ho]!]!;
      outC[ho] = total;
      outS[ho] = score;
      o++;
    }
  }
  return hostLayerOf(H, M, D, out);
}

/** Scratch of {@link mergeRun}: member row offsets and weights of one run. */
interface RunScratch {
  readonly rows: Int32Array;
  readonly weights: Float64Array;
  readonly valueWeights: Float64Array;
}

/**
 * Merge the members of run `o` (slots `[st, en)` of the head at `rowBase` whose segment is `o`) around
 * pivot row `p` into output row `od` of `outK`/`outV`. `total` is the run's count sum in `count` mode
 * (values are scaled by it, each divided by its own count), 0 in `none` mode.
 *
 * First the members' Gaussian weights (one pass over their keys), then each output element as one
 * float64 sum over the members, held in a register: the member rows of a run sit together in cache, so
 * this reads every member element once more without a load and store of an accumulator per element.
 */
function mergeRun(l: LayerData, seg: Int32Array, rowBase: number, o: number, st: number, en: number, p: number, sigma: number, total: number, out: { keys: Float32Array; values: Float32Array }, od: number, scratch: RunScratch): void {
  const { headDim: D, keys, values, counts } = l;
  const { rows, weights, valueWeights } = scratch;
  const pk = p * D;
  const twoSigma2 = 2 * sigma * sigma;
  let n = 0;
  let sumG = 0;
  for (let i = st; i < en; i++) {
    const r = rowBase + i;
    if (seg[r] !== o) continue;
    const ik = r * D;
    // Two accumulators break the add dependency chain.
    let d0 = 0;
    let d1 = 0;
    let d = 0;
    for (; d + 1 < D; d += 2) {
      const x = keys[pk + d]! - keys[ik + d]!;
      const y = keys[pk + d + 1]! - keys[ik + d + 1]!;
      d0 += x * x;
      d1 += y * y;
    }
    if (d < D) {
      const x = keys[pk + d]! - keys[ik + d]!;
      d0 += x * x;
    }
    const d2 = d0 + d1;
    // d2 = 0 short-circuits so the pivot weighs exactly 1 even when 2 sigma^2 underflows to 0.
    const g = d2 === 0 ? 1 : Math.exp(-d2 / twoSigma2);
    if (g === 0) continue;
    sumG += g;
    rows[n] = ik;
    weights[n] = g;
    valueWeights[n] = total > 0 ? g / counts[r]! : g;
    n++;
  }
  const kScale = 1 / sumG;
  const vScale = total > 0 ? total / sumG : kScale;
  const { keys: outK, values: outV } = out;
  // Runs of two or three members are most of a plan's runs. Unrolled, they add the same terms in the same
  // order as the general loop below (0 + x is x), so the results match it (up to the sign of a zero sum)
  // without its inner loop's per-element bookkeeping: about 15% of KVMerger's time on the reference backend.
  if (n === 2) {
    const r0 = rows[0]!;
    const r1 = rows[1]!;
    const w0 = weights[0]!;
    const w1 = weights[1]!;
    const v0 = valueWeights[0]!;
    const v1 = valueWeights[1]!;
    for (let d = 0; d < D; d++) {
      outK[od + d] = (w0 * keys[r0 + d]! + w1 * keys[r1 + d]!) * kScale;
      outV[od + d] = (v0 * values[r0 + d]! + v1 * values[r1 + d]!) * vScale;
    }
    return;
  }
  if (n === 3) {
    const r0 = rows[0]!;
    const r1 = rows[1]!;
    const r2 = rows[2]!;
    const w0 = weights[0]!;
    const w1 = weights[1]!;
    const w2 = weights[2]!;
    const v0 = valueWeights[0]!;
    const v1 = valueWeights[1]!;
    const v2 = valueWeights[2]!;
    for (let d = 0; d < D; d++) {
      outK[od + d] = (w0 * keys[r0 + d]! + w1 * keys[r1 + d]! + w2 * keys[r2 + d]!) * kScale;
      outV[od + d] = (v0 * values[r0 + d]! + v1 * values[r1 + d]! + v2 * values[r2 + d]!) * vScale;
    }
    return;
  }
  for (let d = 0; d < D; d++) {
    let k = 0;
    let v = 0;
    for (let m = 0; m < n; m++) {
      const at = rows[m]! + d;
      k += weights[m]! * keys[at]!;
      v += valueWeights[m]! * values[at]!;
    }
    outK[od + d] = k * kScale;
    outV[od + d] = v * vScale;
  }
}
