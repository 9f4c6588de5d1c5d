import { expectRange } from '../kernel-check.js';
import { defineKernel } from '../kernel-definition.js';
import type { LayerCache } from '../kernels.js';
import type { HostTensor } from '../tensor.js';
import { f32, i32, layerData, type LayerCall, type LayerData } from './host.js';

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
    const k = check.tensor(index, 'gather index', 'int32', 2)[1]!;
    check.shaped(index, 'gather index', 'int32', [dims.heads, k]);
    return { layer, index, dims, k };
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
