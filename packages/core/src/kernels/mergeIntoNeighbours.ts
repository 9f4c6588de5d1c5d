import { ShapeError } from '../errors.js';
import { expectRange } from '../kernel-check.js';
import { defineKernel, type HostReader } from '../kernel-definition.js';
import type { LayerCache, NeighbourMergePlan } from '../kernels.js';
import type { HostTensor } from '../tensor.js';
import { hostLayerOf, layerArrays, layerData, type HostAllocator, type LayerCall } from './host.js';
import { gatherInto } from './gather.js';

/** A validated {@link KVKernels.mergeIntoNeighbours} call. */
export interface MergeIntoNeighboursCall<T = unknown> extends LayerCall<T> {
  /** The plan. */
  readonly plan: NeighbourMergePlan<T>;
  /** Kept slots per head. */
  readonly kept: number;
  /** Sources per head. */
  readonly sources: number;
}

/**
 * CaM value merge: gather the kept slots, then for each source `s` with `targetCount > 0`, add
 * `gate[s] * v[source[s]] / targetCount[s]` to the values of kept slots
 * `targetStart[s] .. targetStart[s] + targetCount[s] - 1`. `v` is the input layer's values. Keys,
 * positions, counts and scores are gathered unchanged. Each kept value is its own value plus the sum of
 * what it receives, summed in float64 and rounded to float32 once.
 *
 * The reference sums without visiting every (source, target) pair: with B the widest window of a head,
 * a window that reaches the end of its block of B kept slots is a suffix of that block plus a prefix of
 * the next, so each source is added once where its window starts (a running sum forward through the
 * block) and once where it ends (a running sum backward through the next block): O((sources + kept) x
 * headDim) per head instead of O(sources x window x headDim), and only additions (no running sum is
 * ever subtracted from, so nothing cancels). Blocks are done one at a time, so the float64 sums stay in
 * cache. Windows inside one block (CaM's plans have none) are added directly.
 * @throws ShapeError when `keep` is not strictly ascending within `[0, length)`, a source is out of
 *   range, a target window leaves `keep`, a count is negative, a gate is not finite, or shapes disagree.
 */
export const mergeIntoNeighboursKernel = defineKernel({
  name: 'mergeIntoNeighbours',
  description: "CaM value merge: gather the kept slots and add each evicted slot's gated value to a window of kept neighbours.",
  validate(check, layer: LayerCache<unknown>, plan: NeighbourMergePlan<unknown>): MergeIntoNeighboursCall {
    const dims = check.layer(layer, 'mergeIntoNeighbours');
    const H = dims.heads;
    check.object(plan, 'mergeIntoNeighbours: plan', 'NeighbourMergePlan');
    const kept = check.columns(plan.keep, 'mergeIntoNeighbours plan.keep', 'int32', H);
    const sources = check.columns(plan.source, 'mergeIntoNeighbours plan.source', 'int32', H);
    for (const f of ['targetStart', 'targetCount', 'gate'] as const) check.shaped(plan[f], `mergeIntoNeighbours plan.${f}`, f === 'gate' ? 'float32' : 'int32', [H, sources]);
    return { layer, plan, dims, kept, sources };
  },
  contents: checkPlan,
  reference: mergeIntoNeighbours,
});

/**
 * The plan's contents: `keep` strictly ascending within `[0, length)`, sources in range, every target
 * window inside `keep`, counts >= 0, gates finite. Throws for the first problem.
 */
function checkPlan({ plan, dims, kept: K, sources: S }: MergeIntoNeighboursCall, read: HostReader): void {
  const { heads: H, length: L } = dims;
  const keep = read(plan.keep).data;
  expectRange(keep, K, 0, L - 1, 'mergeIntoNeighbours plan.keep');
  for (let h = 0; h < H; h++) {
    for (let j = 1; j < K; j++) {
      if (keep[h * K + j]! <= keep[h * K + j - 1]!) {
        throw new ShapeError(`mergeIntoNeighbours plan.keep[${h}, ${j}] = ${keep[h * K + j]} must be greater than plan.keep[${h}, ${j - 1}] = ${keep[h * K + j - 1]} (kept slots are strictly ascending)`, {
          field: 'plan.keep', head: h, index: j,
        });
      }
    }
  }
  expectRange(read(plan.source).data, S, 0, L - 1, 'mergeIntoNeighbours plan.source');
  const tStart = read(plan.targetStart).data;
  const tCount = read(plan.targetCount).data;
  const gate = read(plan.gate).data;
  // Head by head, so the head of an entry is not a division per entry (this check runs on every host-validated
  // call: 2.6 ms of onnx's CaM prefill at 32 x 16k with one flat loop).
  for (let h = 0; h < H; h++) {
    for (let i = h * S, end = i + S; i < end; i++) {
      const c = tCount[i]!;
      const st = tStart[i]!;
      const g = gate[i]!;
      // One test for the usual entry; the exact rule is reported below when it fails.
      if (c >= 0 && (c === 0 || (st >= 0 && st + c <= K)) && g - g === 0) continue;
      if (c < 0) throw new ShapeError(`mergeIntoNeighbours plan.targetCount[${h}, ${i - h * S}] = ${c} must be >= 0`, { field: 'plan.targetCount', head: h, index: i - h * S, value: c });
      if (c > 0 && (st < 0 || st + c > K)) {
        throw new ShapeError(`mergeIntoNeighbours plan.targetStart[${h}, ${i - h * S}] = ${st} with targetCount ${c} leaves plan.keep (targets must lie in [0, ${K - 1}])`, {
          field: 'plan.targetStart', head: h, index: i - h * S, value: st, allowed: [0, K - c],
        });
      }
      throw new ShapeError(`mergeIntoNeighbours plan.gate[${h}, ${i - h * S}] = ${g} must be finite`, { field: 'plan.gate', head: h, index: i - h * S, value: g });
    }
  }
}

function mergeIntoNeighbours({ layer, plan, dims, kept: K, sources: S }: MergeIntoNeighboursCall<HostTensor>, alloc?: HostAllocator): LayerCache<HostTensor> {
  const l = layerData(layer, dims);
  const { heads: H, length: L, headDim: D } = l;
  const source = plan.source.data as Int32Array;
  const tStart = plan.targetStart.data as Int32Array;
  const tCount = plan.targetCount.data as Int32Array;
  const gate = plan.gate.data as Float32Array;
  const out = layerArrays(H, K, D, alloc);
  gatherInto(l, plan.keep.data as Int32Array, K, out);
  const outV = out.values;
  const values = l.values;
  // Sources of the head bucketed by the block their window starts in (counting sort, so any order of
  // sources works), and the float64 sums of the current block: what each of its slots receives from
  // windows that start in it (`forward`) and from windows that started in the previous block (`backward`).
  const order = new Int32Array(S);
  let firstOf = new Int32Array(0);
  let forward = new Float64Array(0);
  let backward = new Float64Array(0);
  for (let h = 0; h < H; h++) {
    const s0 = h * S;
    // Block size: the widest window of the head. A window of at most B slots that reaches the end of its
    // block is a suffix of that block plus a prefix of the next one.
    let B = 0;
    for (let s = s0; s < s0 + S; s++) if (gate[s] !== 0 && tCount[s]! > B) B = tCount[s]!;
    if (B === 0) continue;
    const blocks = Math.ceil(K / B);
    if (firstOf.length < blocks + 1) firstOf = new Int32Array(blocks + 1);
    if (forward.length < B * D) {
      forward = new Float64Array(B * D);
      backward = new Float64Array(B * D);
    }
    firstOf.fill(0, 0, blocks + 1);
    for (let s = s0; s < s0 + S; s++) if (gate[s] !== 0 && tCount[s]! > 0) firstOf[Math.floor(tStart[s]! / B) + 1]!++;
    for (let x = 0; x < blocks; x++) firstOf[x + 1]! += firstOf[x]!;
    const fill = firstOf.slice(0, blocks);
    for (let s = s0; s < s0 + S; s++) if (gate[s] !== 0 && tCount[s]! > 0) order[fill[Math.floor(tStart[s]! / B)]!++] = s;
    for (let x = 0; x < blocks; x++) {
      const b0 = x * B;
      const b1 = Math.min(K, b0 + B);
      const width = (b1 - b0) * D;
      forward.fill(0, 0, width);
      backward.fill(0, 0, width);
      let touched = false;
      // Windows that started in the previous block and run into this one: their prefix part.
      if (x > 0) {
        for (let q = firstOf[x - 1]!; q < firstOf[x]!; q++) {
          const s = order[q]!;
          const end = tStart[s]! + tCount[s]!;
          if (end <= b0) continue;
          addScaled(backward, (end - 1 - b0) * D, values, (h * L + source[s]!) * D, gate[s]! / tCount[s]!, D);
          touched = true;
        }
      }
      let inside = false;
      for (let q = firstOf[x]!; q < firstOf[x + 1]!; q++) {
        const s = order[q]!;
        if (tStart[s]! + tCount[s]! < b1) {
          inside = true;
          continue;
        }
        addScaled(forward, (tStart[s]! - b0) * D, values, (h * L + source[s]!) * D, gate[s]! / tCount[s]!, D);
        touched = true;
      }
      if (!touched && !inside) continue;
      for (let t = 1; t < b1 - b0; t++) addRow(forward, t * D, forward, (t - 1) * D, D);
      for (let t = b1 - b0 - 2; t >= 0; t--) addRow(backward, t * D, backward, (t + 1) * D, D);
      if (inside) {
        // Windows that neither reach their block's end nor leave it (CaM's plans have none): added to each target.
        for (let q = firstOf[x]!; q < firstOf[x + 1]!; q++) {
          const s = order[q]!;
          const a = tStart[s]!;
          const c = tCount[s]!;
          if (a + c >= b1) continue;
          for (let t = a; t < a + c; t++) addScaled(forward, (t - b0) * D, values, (h * L + source[s]!) * D, gate[s]! / c, D);
        }
      }
      const at = (h * K + b0) * D;
      for (let i = 0; i < width; i++) outV[at + i] = outV[at + i]! + forward[i]! + backward[i]!;
    }
  }
  return hostLayerOf(H, K, D, out);
}

/** `acc[at .. at + D) += f * x[from .. from + D)` (float64 accumulator). */
function addScaled(acc: Float64Array, at: number, x: Float32Array, from: number, f: number, D: number): void {
  for (let d = 0; d < D; d++) acc[at + d] += f * x[from + d]!;
}

/** `acc[at .. at + D) += y[from .. from + D)`. */
function addRow(acc: Float64Array, at: number, y: Float64Array, from: number, D: number): void {
  for (let d = 0; d < D; d++) acc[at + d] += y[from + d]!;
}
