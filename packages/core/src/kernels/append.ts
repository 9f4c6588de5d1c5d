import { defineKernel } from '../kernel-definition.js';
import type { LayerCache } from '../kernels.js';
import type { HostTensor } from '../tensor.js';
import { hostLayerOf, layerArrays, layerData, type HostAllocator, type LayerCall } from './host.js';

/** A validated {@link KVKernels.append} call. */
export interface AppendCall<T = unknown> extends LayerCall<T> {
  /** New keys `[kvHeads, n, headDim]`. */
  readonly keys: T;
  /** New values `[kvHeads, n, headDim]`. */
  readonly values: T;
  /** New positions int32 `[kvHeads, n]`. */
  readonly positions: T;
  /** Tokens appended. */
  readonly n: number;
}

/**
 * Append `n` new tokens to every head of `layer`: keys and values `[kvHeads, n, headDim]`, positions
 * int32 `[kvHeads, n]`. New slots get count 1 and score 0. The layer is not modified.
 * @throws ShapeError when the new tensors disagree with the layer's heads or headDim, or with each other.
 */
export const appendKernel = defineKernel({
  name: 'append',
  description: 'Append n new tokens to every head; new slots get count 1 and score 0.',
  validate(check, layer: LayerCache<unknown>, keys: unknown, values: unknown, positions: unknown): AppendCall {
    const dims = check.layer(layer, 'append');
    const n = check.tensor(keys, 'append keys', 'float32', 3)[1]!;
    check.shaped(keys, 'append keys', 'float32', [dims.heads, n, dims.headDim]);
    check.shaped(values, 'append values', 'float32', [dims.heads, n, dims.headDim]);
    check.shaped(positions, 'append positions', 'int32', [dims.heads, n]);
    return { layer, keys, values, positions, dims, n };
  },
  reference: append,
});

function append({ layer, keys, values, positions, dims, n }: AppendCall<HostTensor>, alloc?: HostAllocator): LayerCache<HostTensor> {
  const l = layerData(layer, dims);
  const nk = keys.data as Float32Array;
  const nv = values.data as Float32Array;
  const np = positions.data as Int32Array;

  const { heads: H, length: L, headDim: D } = l;
  const M = L + n;
  const { keys: outK, values: outV, positions: outP, counts: outC, scores: outS } = layerArrays(H, M, D, alloc);
  // Whole-head block copies: typed-array set() is a memcpy, far faster than element loops.
  for (let h = 0; h < H; h++) {
    outK.set(l.keys.subarray(h * L * D, (h + 1) * L * D), h * M * D);
    outK.set(nk.subarray(h * n * D, (h + 1) * n * D), (h * M + L) * D);
    outV.set(l.values.subarray(h * L * D, (h + 1) * L * D), h * M * D);
    outV.set(nv.subarray(h * n * D, (h + 1) * n * D), (h * M + L) * D);
    outP.set(l.positions.subarray(h * L, (h + 1) * L), h * M);
    outP.set(np.subarray(h * n, (h + 1) * n), h * M + L);
    outC.set(l.counts.subarray(h * L, (h + 1) * L), h * M);
    outC.fill(1, h * M + L, (h + 1) * M);
    outS.set(l.scores.subarray(h * L, (h + 1) * L), h * M);
    // Reused output memory holds old contents (the allocator's arrays are not zeroed), so new slots' scores are set, not assumed.
    outS.fill(0, h * M + L, (h + 1) * M);
  }
  return hostLayerOf(H, M, D, { keys: outK, values: outV, positions: outP, counts: outC, scores: outS });
}
