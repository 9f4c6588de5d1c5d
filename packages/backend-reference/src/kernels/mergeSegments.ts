import { mergeSegmentsKernel, type HostTensor, type KernelImplementation, type LayerCache, type MergeSegmentsCall } from '@kvfold/core';
import type { WasmPool } from '../wasm-heap.js';
import { arraysOf, pointers, runLayerKernel } from './layer.js';

/** mergeSegments (KVMerger) in wasm SIMD, float32 lanes within 1e-5 of core's float64 reference (which runs when an array is not in the heap). */
export function wasmMergeSegments(pool: WasmPool): KernelImplementation<MergeSegmentsCall<HostTensor>, LayerCache<HostTensor>> {
  return {
    // The plan's content checks in wasm: core's TypeScript check costs about as much as the merge itself.
    // Arrays outside the heap get core's check here (the reference backend reads its tensors in place).
    screen(call) {
      const { segment, pivot, sigma } = call.plan;
      const p = pointers(pool.heap, [segment.data as Int32Array, pivot.data as Int32Array, sigma.data as Float32Array, call.layer.counts.data as Int32Array]);
      if (p) return { valid: pool.heap.kernels.screenSegments(...p, call.dims.heads, call.dims.length, call.outLength, call.byCount ? 1 : 0) === 1 };
      mergeSegmentsKernel.contents!(call, (t) => t as HostTensor);
      return { valid: true };
    },
    run(call) {
      const { heads: H, length: L, headDim: D } = call.dims;
      const M = call.outLength;
      const { heap } = pool;
      const start = heap.scratch32(H * M);
      const end = heap.scratch32(H * M);
      const rows = heap.scratch32(L);
      const weights = heap.scratch64(L);
      const valueWeights = heap.scratch64(L);
      try {
        const scratch = start && end && rows && weights && valueWeights ? pointers(heap, [start, end, rows, weights, valueWeights]) : undefined;
        if (!scratch) return mergeSegmentsKernel.reference(call, pool);
        const { segment, pivot, sigma } = call.plan;
        const inputs = [...arraysOf(call.layer), segment.data as Int32Array, pivot.data as Int32Array, sigma.data as Float32Array];
        const out = runLayerKernel(pool, inputs, H, M, D, (i, o) => {
          heap.kernels.mergeSegments(...i, H, L, D, M, call.byCount ? 1 : 0, ...o, ...scratch);
        });
        return out ?? mergeSegmentsKernel.reference(call, pool);
      } finally {
        heap.release(start, end, rows, weights, valueWeights);
      }
    },
  };
}
