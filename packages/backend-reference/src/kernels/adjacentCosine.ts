import { adjacentCosineKernel, type AdjacentCosineCall, type HostTensor, type KernelImplementation } from '@kvfold/core';
import { HEAD_SPLITS, type KernelThreads } from '@kvfold/wasm-kernels';
import type { WasmPool } from '../wasm-heap.js';

/**
 * adjacentCosine in wasm SIMD (bit-identical to core's reference, which runs when the keys are not in the
 * heap), split by heads over `threads`.
 */
export function wasmAdjacentCosine(pool: WasmPool, threads: KernelThreads): KernelImplementation<AdjacentCosineCall<HostTensor>, HostTensor> {
  return {
    run(call) {
      const [H, L, D] = call.shape;
      const k = pool.heap.pointer(call.keys.data as Float32Array);
      const M = L > 0 ? L - 1 : 0;
      if (k >= 0) {
        const out = pool.float32(H * M);
        const o = pool.heap.pointer(out);
        if (o >= 0) {
          const slots = threads.slots(H, H * L * D * 4);
          threads.run('adjacentCosine', [k, o, H, L, D], HEAD_SPLITS.adjacentCosine(L, D), Array.from({ length: slots }, () => []));
          return { dtype: 'float32', shape: [H, M], data: out };
        }
        pool.release(out);
      }
      return adjacentCosineKernel.reference(call, pool);
    },
  };
}
