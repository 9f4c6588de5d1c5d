import { expectRange } from '../kernel-check.js';
import { defineKernel } from '../kernel-definition.js';
import type { LayerCache } from '../kernels.js';
import type { HostTensor } from '../tensor.js';
import { hostLayerOf, layerArrays, layerData, type LayerCall, type LayerData } from './host.js';

/** A validated {@link KVKernels.gather} call. */
export interface GatherCall<T = unknown> extends LayerCall<T> {
  /** int32 `[kvHeads, k]`. */
  readonly index: T;
  /** Slots gathered per head. */
  readonly k: number;
}

/**
 * Gather every field of `layer` at int32 `index [kvHeads, k]` (per head; duplicates allowed, order kept).
 * @throws ShapeError when `index` has another head count or an entry outside `[0, length)`.
 */
export const gatherKernel = defineKernel({
  name: 'gather',
  description: 'Gather every field of the layer at int32 index [kvHeads, k] (duplicates allowed, order kept).',
  validate(check, layer: LayerCache<unknown>, index: unknown): GatherCall {
    const dims = check.layer(layer, 'gather');
    return { layer, index, dims, k: check.columns(index, 'gather index', 'int32', dims.heads) };
  },
  contents({ index, dims, k }, read) {
    expectRange(read(index).data, k, 0, dims.length - 1, 'gather index');
  },
  reference({ layer, index, dims, k }: GatherCall<HostTensor>): LayerCache<HostTensor> {
    return gatherRows(layerData(layer, dims), index.data as Int32Array, k);
  },
});

/**
 * Gather without validation, for kernels that already checked `idx` (values in range, `[H, k]`).
 * Shared by {@link gather} and mergeIntoNeighbours.
 */
export function gatherRows(l: LayerData, idx: Int32Array, k: number): LayerCache<HostTensor> {
  const { heads: H, length: L, headDim: D } = l;
  const { keys: outK, values: outV, positions: outP, counts: outC, scores: outS } = layerArrays(H, k, D);
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
  return hostLayerOf(H, k, D, { keys: outK, values: outV, positions: outP, counts: outC, scores: outS });
}
