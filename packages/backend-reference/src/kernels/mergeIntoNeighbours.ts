import { mergeIntoNeighboursKernel, type HostTensor, type KernelImplementation, type LayerCache, type MergeIntoNeighboursCall } from '@kvfold/core';
import type { WasmPool } from '../wasm-heap.js';
import { arraysOf, pointers, runLayerKernel } from './layer.js';

/** mergeIntoNeighbours (CaM) in wasm SIMD, float32 lanes within 1e-5 of core's float64 reference (which runs when an array is not in the heap). */
export function wasmMergeIntoNeighbours(pool: WasmPool): KernelImplementation<MergeIntoNeighboursCall<HostTensor>, LayerCache<HostTensor>> {
  return {
    // The plan's content checks in wasm, as in mergeSegments.
    screen(call) {
      const { plan } = call;
      const p = pointers(pool.heap, [plan.keep, plan.source, plan.targetStart, plan.targetCount, plan.gate].map((t) => t.data as Int32Array | Float32Array));
      if (p) return { valid: pool.heap.kernels.screenNeighbours(...p, call.dims.heads, call.dims.length, call.kept, call.sources) === 1 };
      mergeIntoNeighboursKernel.contents!(call, (t) => t as HostTensor);
      return { valid: true };
    },
    run(call) {
      const { heads: H, length: L, headDim: D } = call.dims;
      const { kept: K, sources: S, plan } = call;
      const { heap } = pool;
      // Block sums (float32) are at most K slots wide (a window never leaves the kept set).
      const order = heap.scratch32(S);
      const firstOf = heap.scratch32(K + 1);
      const fill = heap.scratch32(K + 1);
      const forward = heap.scratch32(K * D);
      const backward = heap.scratch32(K * D);
      try {
        const scratch = order && firstOf && fill && forward && backward ? pointers(heap, [order, firstOf, fill, forward, backward]) : undefined;
        if (!scratch) return mergeIntoNeighboursKernel.reference(call, pool);
        const inputs = [...arraysOf(call.layer), ...[plan.keep, plan.source, plan.targetStart, plan.targetCount].map((t) => t.data as Int32Array), plan.gate.data as Float32Array];
        const out = runLayerKernel(pool, inputs, H, K, D, (i, o) => {
          heap.kernels.mergeIntoNeighbours(...i, H, L, D, K, S, ...o, ...scratch);
        });
        return out ?? mergeIntoNeighboursKernel.reference(call, pool);
      } finally {
        heap.release(order, firstOf, fill, forward, backward);
      }
    },
  };
}
