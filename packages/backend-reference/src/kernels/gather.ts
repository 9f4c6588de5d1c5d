import { gatherKernel, type GatherCall, type HostTensor, type KernelImplementation, type LayerCache } from '@kvfold/core';
import { HEAD_SPLITS, type KernelThreads } from '@kvfold/wasm-kernels';
import type { WasmPool } from '../wasm-heap.js';
import { arraysOf, runLayerKernel } from './layer.js';

/**
 * gather in wasm: runs of consecutive slots found once, key and value rows copied side by side, scalars as one `memory.copy` (core's reference runs when an
 * array is not in the heap), split by heads over `threads`.
 */
export function wasmGather(pool: WasmPool, threads: KernelThreads): KernelImplementation<GatherCall<HostTensor>, LayerCache<HostTensor>> {
  return {
    run(call) {
      const { heads: H, length: L, headDim: D } = call.dims;
      const out = runLayerKernel(pool, [...arraysOf(call.layer), call.index.data as Int32Array], H, call.k, D, (i, o) => {
        const k = call.k;
        const slots = threads.slots(H, H * L * D * 4);
        threads.run('gather', [...i, H, L, D, k, ...o], HEAD_SPLITS.gather(L, D, k), Array.from({ length: slots }, () => []));
      });
      return out ?? gatherKernel.reference(call, pool);
    },
  };
}
