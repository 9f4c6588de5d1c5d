import { topKKernel, type HostTensor, type KernelImplementation, type TopKCall } from '@kvfold/core';
import { HEAD_SPLITS, TOPK_BYTES_PER_SCORE, TOPK_HIST_WORDS, type KernelThreads } from '@kvfold/wasm-kernels';
import type { WasmPool } from '../wasm-heap.js';
import { pointers } from './layer.js';

/**
 * topK in wasm SIMD: core's radix selection (a selection, so the result is exactly the reference's, which
 * runs when the scores are not in the heap), split by heads over `threads` (each thread with its own
 * candidate and histogram scratch).
 */
export function wasmTopK(pool: WasmPool, threads: KernelThreads): KernelImplementation<TopKCall<HostTensor>, HostTensor> {
  return {
    run(call) {
      const { heads: H, length: L, k, from, to } = call;
      const { heap } = pool;
      const s = heap.pointer(call.scores.data as Float32Array);
      if (s < 0 || k === 0 || H === 0) return topKKernel.reference(call, pool);
      const m = to - from;
      const slots = threads.slots(H, H * m * TOPK_BYTES_PER_SCORE);
      const perThread: (Int32Array | undefined)[] = [];
      for (let t = 0; t < slots; t++) perThread.push(heap.scratch32(m), heap.scratch32(TOPK_HIST_WORDS));
      try {
        const own = perThread.every((a) => a !== undefined) ? pointers(heap, perThread as Int32Array[]) : undefined;
        if (!own) return topKKernel.reference(call, pool);
        const out = pool.int32(H * k);
        const o = heap.pointer(out);
        if (o < 0) {
          pool.release(out);
          return topKKernel.reference(call, pool);
        }
        const scratch = Array.from({ length: slots }, (_, t) => own.slice(2 * t, 2 * t + 2));
        threads.run('topK', [s, o, H, L, from, to, k], HEAD_SPLITS.topK(L, k), scratch);
        return { dtype: 'int32', shape: [H, k], data: out };
      } finally {
        heap.release(...perThread);
      }
    },
  };
}
