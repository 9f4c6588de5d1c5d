import { mergeIntoNeighboursKernel, type HostTensor, type KernelImplementation, type LayerCache, type MergeIntoNeighboursCall } from '@kvfold/core';
import { HEAD_SPLITS, type KernelThreads } from '@kvfold/wasm-kernels';
import type { WasmPool } from '../wasm-heap.js';
import { arraysOf, pointers, runLayerKernel } from './layer.js';

/**
 * mergeIntoNeighbours (CaM) in wasm SIMD, float32 lanes within 1e-5 of core's float64 reference (which runs when
 * an array is not in the heap), split by heads over `threads` (each thread with its own block-sum scratch).
 */
export function wasmMergeIntoNeighbours(pool: WasmPool, threads: KernelThreads): KernelImplementation<MergeIntoNeighboursCall<HostTensor>, LayerCache<HostTensor>> {
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
      const slots = threads.slots(H, H * L * D * 4);
      // Block sums (float32) are at most K slots wide (a window never leaves the kept set); one set per thread.
      const perThread: (Int32Array | Float64Array | undefined)[] = [];
      for (let t = 0; t < slots; t++) perThread.push(heap.scratch32(S), heap.scratch32(K + 1), heap.scratch32(K + 1), heap.scratch32(K * D), heap.scratch32(K * D));
      try {
        const own = perThread.every((a) => a !== undefined) ? pointers(heap, perThread as (Int32Array | Float64Array)[]) : undefined;
        if (!own) return mergeIntoNeighboursKernel.reference(call, pool);
        const inputs = [...arraysOf(call.layer), ...[plan.keep, plan.source, plan.targetStart, plan.targetCount].map((t) => t.data as Int32Array), plan.gate.data as Float32Array];
        const out = runLayerKernel(pool, inputs, H, K, D, (i, o) => {
          const scratch = Array.from({ length: slots }, (_, t) => own.slice(5 * t, 5 * t + 5));
          threads.run('mergeIntoNeighbours', [...i, H, L, D, K, S, ...o], HEAD_SPLITS.mergeIntoNeighbours(L, D, K, S), scratch);
        });
        return out ?? mergeIntoNeighboursKernel.reference(call, pool);
      } finally {
        heap.release(...perThread);
      }
    },
  };
}
