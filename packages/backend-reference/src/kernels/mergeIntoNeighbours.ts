import { ShapeError, type HostTensor, type LayerCache, type NeighbourMergePlan } from '@kvfold/core';
import { expectIndices, expectShape, layerData, tensorData } from '../validate.js';
import { gatherRows } from './gather.js';

/**
 * CaM value merge: gather the kept slots, then for each source `s` (in order) with `targetCount > 0`,
 * add `gate[s] * v[source[s]] / targetCount[s]` to the values of kept slots
 * `targetStart[s] .. targetStart[s] + targetCount[s] - 1`. `v` is the input layer's values. Keys,
 * positions, counts and scores are gathered unchanged.
 * @throws ShapeError when `keep` is not strictly ascending within `[0, length)`, a source is out of
 *   range, a target window leaves `keep`, a count is negative, a gate is not finite, or shapes disagree.
 */
export function mergeIntoNeighbours(layer: LayerCache<HostTensor>, plan: NeighbourMergePlan<HostTensor>): LayerCache<HostTensor> {
  const l = layerData(layer, 'mergeIntoNeighbours');
  const { heads: H, length: L, headDim: D } = l;
  if (typeof plan !== 'object' || plan === null) throw new ShapeError('mergeIntoNeighbours: plan must be a NeighbourMergePlan object', { field: 'plan' });
  const keep = tensorData(plan.keep, 'mergeIntoNeighbours plan.keep', 'int32', 2);
  const K = plan.keep.shape[1]!;
  expectShape(plan.keep.shape, [H, K], 'mergeIntoNeighbours plan.keep');
  const source = tensorData(plan.source, 'mergeIntoNeighbours plan.source', 'int32', 2);
  const S = plan.source.shape[1]!;
  expectShape(plan.source.shape, [H, S], 'mergeIntoNeighbours plan.source');
  const tStart = tensorData(plan.targetStart, 'mergeIntoNeighbours plan.targetStart', 'int32', 2);
  expectShape(plan.targetStart.shape, [H, S], 'mergeIntoNeighbours plan.targetStart');
  const tCount = tensorData(plan.targetCount, 'mergeIntoNeighbours plan.targetCount', 'int32', 2);
  expectShape(plan.targetCount.shape, [H, S], 'mergeIntoNeighbours plan.targetCount');
  const gate = tensorData(plan.gate, 'mergeIntoNeighbours plan.gate', 'float32', 2);
  expectShape(plan.gate.shape, [H, S], 'mergeIntoNeighbours plan.gate');

  expectIndices(keep, K, L, 'mergeIntoNeighbours plan.keep');
  for (let h = 0; h < H; h++) {
    for (let j = 1; j < K; j++) {
      if (keep[h * K + j]! <= keep[h * K + j - 1]!) {
        throw new ShapeError(`mergeIntoNeighbours plan.keep[${h}, ${j}] = ${keep[h * K + j]} must be greater than plan.keep[${h}, ${j - 1}] = ${keep[h * K + j - 1]} (kept slots are strictly ascending)`, {
          field: 'plan.keep', head: h, index: j,
        });
      }
    }
  }
  expectIndices(source, S, L, 'mergeIntoNeighbours plan.source');
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
