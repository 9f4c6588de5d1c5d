import { gatherKernel, type GatherCall, type HostTensor, type KernelImplementation, type LayerCache } from '@kvfold/core';
import type { KernelThreads } from '@kvfold/wasm-kernels';
import type { WasmPool } from '../wasm-heap.js';
import { arraysOf, layerStrides, runLayerKernel } from './layer.js';

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
        const strides = [...layerStrides(L, D), k * 4, 0, 0, 0, 0, ...layerStrides(k, D)];
        const slots = threads.slots(H, H * L * D * 4);
        threads.run('gather', [...i, H, L, D, k, ...o], strides, 6, Array.from({ length: slots }, () => []));
      });
      return out ?? gatherKernel.reference(call, pool);
    },
  };
}
