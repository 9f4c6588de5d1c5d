import type { HostTensor, LayerCache } from '@kvfold/core';
import { expectIndices, expectShape, f32, i32, layerData, tensorData, type LayerData } from '../validate.js';

/**
 * Gather every field of `layer` at int32 `index [kvHeads, k]` (per head; duplicates allowed, order kept).
 * @throws ShapeError when `index` has another head count or an entry outside `[0, length)`.
 */
export function gather(layer: LayerCache<HostTensor>, index: HostTensor): LayerCache<HostTensor> {
  const l = layerData(layer, 'gather');
  const idx = tensorData(index, 'gather index', 'int32', 2);
  const k = index.shape[1]!;
  expectShape(index.shape, [l.heads, k], 'gather index');
  expectIndices(idx, k, l.length, 'gather index');
  return gatherRows(l, idx, k);
}

/**
 * Gather without validation, for kernels that already checked `idx` (values in range, `[H, k]`).
 * Shared by {@link gather} and mergeIntoNeighbours.
 */
export function gatherRows(l: LayerData, idx: Int32Array, k: number): LayerCache<HostTensor> {
  const { heads: H, length: L, headDim: D } = l;
  const outK = new Float32Array(H * k * D);
  const outV = new Float32Array(H * k * D);
  const outP = new Int32Array(H * k);
  const outC = new Int32Array(H * k);
  const outS = new Float32Array(H * k);
  const keys = l.keys;
  const values = l.values;
  for (let h = 0; h < H; h++) {
    const rowBase = h * L;
    for (let j = 0; j < k; j++) {
      const o = h * k + j;
      const src = rowBase + idx[o]!;
      outP[o] = l.positions[src]!;
      outC[o] = l.counts[src]!;
      outS[o] = l.scores[src]!;
      const s = src * D;
      const d0 = o * D;
      for (let d = 0; d < D; d++) {
        outK[d0 + d] = keys[s + d]!;
        outV[d0 + d] = values[s + d]!;
      }
    }
  }
  return {
    keys: f32([H, k, D], outK),
    values: f32([H, k, D], outV),
    positions: i32([H, k], outP),
    counts: i32([H, k], outC),
    scores: f32([H, k], outS),
  };
}
