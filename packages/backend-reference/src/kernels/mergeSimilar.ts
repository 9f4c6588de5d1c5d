import { mergeSimilarKernel, type HostTensor, type KernelImplementation, type MergeSimilarCall, type SimilarMerge } from '@kvfold/core';
import { HEAD_SPLITS, type KernelThreads } from '@kvfold/wasm-kernels';
import type { WasmPool } from '../wasm-heap.js';
import { arraysOf, pointers, runLayerKernel } from './layer.js';

/**
 * mergeSimilar in wasm, one head at a time (cosines, mask, topK, linkSegments, mergeSegments: the wasm kernels of
 * those names, so the chain's results, the merge within 1e-5 of core's float64 reference), split by heads over
 * `threads`, each thread with its own scratch block. Core's reference runs when an array is not in the heap.
 */
export function wasmMergeSimilar(pool: WasmPool, threads: KernelThreads): KernelImplementation<MergeSimilarCall<HostTensor>, SimilarMerge<HostTensor>> {
  return {
    // The contents check in wasm (core's TypeScript check reads every count); core's check for arrays outside the heap.
    screen(call) {
      const p = pointers(pool.heap, [call.plan.protect.data as Int32Array, call.layer.counts.data as Int32Array]);
      if (p) return { valid: pool.heap.kernels.screenSimilar(p[0]!, p[1]!, call.dims.heads, call.dims.length, call.protectedSlots, call.byCount ? 1 : 0) === 1 };
      mergeSimilarKernel.contents!(call, (t) => t as HostTensor);
      return { valid: true };
    },
    run(call) {
      const { heads: H, length: L, headDim: D } = call.dims;
      const { count: C, protect, minSimilarity, sigma } = call.plan;
      const M = L - C;
      const P = call.protectedSlots;
      const { heap } = pool;
      const slots = threads.slots(H, H * L * D * 4);
      const words = Math.ceil(heap.kernels.mergeSimilarScratch(L, C) / 4);
      const perThread: (Int32Array | undefined)[] = [];
      for (let t = 0; t < slots; t++) perThread.push(heap.scratch32(words));
      const lowest = pool.float32(H);
      const eligible = pool.int32(H);
      try {
        const small = [heap.pointer(lowest), heap.pointer(eligible)];
        const own = perThread.map((a) => (a === undefined ? -1 : heap.pointer(a)));
        const layer =
          small.every((p) => p >= 0) && own.every((p) => p >= 0)
            ? runLayerKernel(pool, [...arraysOf(call.layer), protect.data as Int32Array], H, M, D, (i, o) => {
                const [lk, lv, lp, lc, ls, prot] = i;
                threads.run('mergeSimilar', [lk!, lv!, lp!, lc!, ls!, prot!, H, L, D, P, C, minSimilarity, sigma, call.byCount ? 1 : 0, ...o, ...small], HEAD_SPLITS.mergeSimilar(L, D, M, P), own.map((p) => [p]));
              })
            : undefined;
        if (!layer) {
          pool.release(lowest);
          pool.release(eligible);
          return mergeSimilarKernel.reference(call, pool);
        }
        return { layer, lowest: { dtype: 'float32', shape: [H], data: lowest }, eligible: { dtype: 'int32', shape: [H], data: eligible } };
      } finally {
        heap.release(...perThread);
      }
    },
  };
}
