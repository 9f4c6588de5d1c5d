import { gatherKernel, type GatherCall, type HostTensor, type KernelImplementation, type LayerCache } from '@kvfold/core';
import type { WasmPool } from '../wasm-heap.js';
import { arraysOf, runLayerKernel } from './layer.js';

/** gather in wasm: runs of consecutive slots as one `memory.copy` per field (core's reference runs when an array is not in the heap). */
export function wasmGather(pool: WasmPool): KernelImplementation<GatherCall<HostTensor>, LayerCache<HostTensor>> {
  return {
    run(call) {
      const { heads: H, length: L, headDim: D } = call.dims;
      const out = runLayerKernel(pool, [...arraysOf(call.layer), call.index.data as Int32Array], H, call.k, D, (i, o) => {
        pool.heap.kernels.gather(i[0]!, i[1]!, i[2]!, i[3]!, i[4]!, i[5]!, H, L, D, call.k, ...o);
      });
      return out ?? gatherKernel.reference(call, pool);
    },
  };
}
