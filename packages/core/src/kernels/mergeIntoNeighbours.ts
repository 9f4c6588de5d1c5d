import { ShapeError } from '../errors.js';
import { expectRange } from '../kernel-check.js';
import { defineKernel, type HostReader } from '../kernel-definition.js';
import type { LayerCache, NeighbourMergePlan } from '../kernels.js';
import type { HostTensor } from '../tensor.js';
import { layerData, type LayerCall } from './host.js';
import { gatherRows } from './gather.js';

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
 * CaM value merge: gather the kept slots, then for each source `s` (in order) with `targetCount > 0`,
 * add `gate[s] * v[source[s]] / targetCount[s]` to the values of kept slots
 * `targetStart[s] .. targetStart[s] + targetCount[s] - 1`. `v` is the input layer's values. Keys,
 * positions, counts and scores are gathered unchanged.
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
  for (let i = 0; i < H * S; i++) {
    const h = Math.floor(i / S);
    const c = tCount[i]!;
    const st = tStart[i]!;
    if (c < 0) throw new ShapeError(`mergeIntoNeighbours plan.targetCount[${h}, ${i - h * S}] = ${c} must be >= 0`, { field: 'plan.targetCount', head: h, index: i - h * S, value: c });
    if (c > 0 && (st < 0 || st + c > K)) {
      throw new ShapeError(`mergeIntoNeighbours plan.targetStart[${h}, ${i - h * S}] = ${st} with targetCount ${c} leaves plan.keep (targets must lie in [0, ${K - 1}])`, {
        field: 'plan.targetStart', head: h, index: i - h * S, value: st, allowed: [0, K - c],
      });
    }
    if (!Number.isFinite(gate[i]!)) {
      throw new ShapeError(`mergeIntoNeighbours plan.gate[${h}, ${i - h * S}] = ${gate[i]} must be finite`, { field: 'plan.gate', head: h, index: i - h * S, value: gate[i] });
    }
  }
}

function mergeIntoNeighbours({ layer, plan, dims, kept: K, sources: S }: MergeIntoNeighboursCall<HostTensor>): LayerCache<HostTensor> {
  const l = layerData(layer, dims);
  const { heads: H, length: L, headDim: D } = l;
  const keep = plan.keep.data as Int32Array;
  const source = plan.source.data as Int32Array;
  const tStart = plan.targetStart.data as Int32Array;
  const tCount = plan.targetCount.data as Int32Array;
  const gate = plan.gate.data as Float32Array;

  const out = gatherRows(l, keep, K);
  const outV = out.values.data as Float32Array;
  const values = l.values;
  for (let h = 0; h < H; h++) {
    for (let s = 0; s < S; s++) {
      const i = h * S + s;
      const c = tCount[i]!;
      const g = gate[i]!;
      if (c === 0 || g === 0) continue;
      const f = g / c;
      const src = (h * L + source[i]!) * D;
      const first = (h * K + tStart[i]!) * D;
      const last = first + c * D;
      for (let dst = first; dst < last; dst += D) {
        for (let d = 0; d < D; d++) outV[dst + d] += f * values[src + d]!;
      }
    }
  }
  return out;
}
