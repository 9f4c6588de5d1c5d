import type { HostTensor, LayerCache } from '@kvfold/core';
import { expectShape, f32, i32, layerData, tensorData } from '../validate.js';

/**
 * Append `n` new tokens to every head of `layer`: keys and values `[kvHeads, n, headDim]`, positions
 * int32 `[kvHeads, n]`. New slots get count 1 and score 0. The layer is not modified.
 * @throws ShapeError when the new tensors disagree with the layer's heads or headDim, or with each other.
 */
export function append(layer: LayerCache<HostTensor>, keys: HostTensor, values: HostTensor, positions: HostTensor): LayerCache<HostTensor> {
  const l = layerData(layer, 'append');
  const nk = tensorData(keys, 'append keys', 'float32', 3);
  const n = keys.shape[1]!;
  expectShape(keys.shape, [l.heads, n, l.headDim], 'append keys');
  const nv = tensorData(values, 'append values', 'float32', 3);
  expectShape(values.shape, [l.heads, n, l.headDim], 'append values');
  const np = tensorData(positions, 'append positions', 'int32', 2);
  expectShape(positions.shape, [l.heads, n], 'append positions');

  const { heads: H, length: L, headDim: D } = l;
  const M = L + n;
  const outK = new Float32Array(H * M * D);
  const outV = new Float32Array(H * M * D);
  const outP = new Int32Array(H * M);
  const outC = new Int32Array(H * M);
  const outS = new Float32Array(H * M);
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
  }
  return {
    keys: f32([H, M, D], outK),
    values: f32([H, M, D], outV),
    positions: i32([H, M], outP),
    counts: i32([H, M], outC),
    scores: f32([H, M], outS),
  };
}
