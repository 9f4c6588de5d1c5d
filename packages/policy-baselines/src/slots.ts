import { hostTensor, type KVKernels, type LayerCache } from '@kvfold/core';

/**
 * Gather the slots listed in `keep` (row-major `[heads, kept]`, ascending per head) into a new layer.
 * The index tensor is a temporary of this call and is disposed before returning.
 */
export function keepSlots<T>(kernels: KVKernels<T>, layer: LayerCache<T>, keep: Int32Array, heads: number): LayerCache<T> {
  const index = kernels.fromHost(hostTensor('int32', [heads, keep.length / heads], keep));
  try {
    return kernels.gather(layer, index);
  } finally {
    kernels.dispose(index);
  }
}

/**
 * How many leading (sink) slots a window keeps under `budget`: at most `sink`, and always leaving at
 * least one slot for the newest token so a decode step never drops the token it just appended.
 */
export function sinkSlots(sink: number, budget: number): number {
  return Math.max(0, Math.min(sink, budget - 1));
}
