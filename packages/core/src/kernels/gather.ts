import { expectRange } from '../kernel-check.js';
import { defineKernel } from '../kernel-definition.js';
import type { LayerCache } from '../kernels.js';
import type { HostTensor } from '../tensor.js';
import { copySlots, hostLayerOf, layerArrays, layerData, type HostAllocator, type LayerArrays, type LayerCall, type LayerData } from './host.js';

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
  reference({ layer, index, dims, k }: GatherCall<HostTensor>, alloc?: HostAllocator): LayerCache<HostTensor> {
    const out = layerArrays(dims.heads, k, dims.headDim, alloc);
    gatherInto(layerData(layer, dims), index.data as Int32Array, k, out);
    return hostLayerOf(dims.heads, k, dims.headDim, out);
  },
});

/**
 * Gather without validation into `out` (`[H, k]` slots), for kernels that already checked `idx` (values
 * in range, `[H, k]`). Shared by {@link gather} and mergeIntoNeighbours.
 *
 * Each run of consecutive source slots (the common case for sorted kept sets) moves with one
 * `TypedArray.set` of whole `[headDim]` rows per field, never element by element.
 */
export function gatherInto(l: LayerData, idx: Int32Array, k: number, out: LayerArrays): void {
  const { heads: H, length: L } = l;
  for (let h = 0; h < H; h++) {
    const rowBase = h * L;
    const outBase = h * k;
    let j = 0;
    while (j < k) {
      const first = idx[outBase + j]!;
      let e = j + 1;
      while (e < k && idx[outBase + e] === first + (e - j)) e++;
      copySlots(l, rowBase + first, out, outBase + j, e - j);
      j = e;
    }
  }
}
