import { linkSegmentsKernel, type HostTensor, type KernelImplementation, type LinkSegmentsCall, type SegmentPlan } from '@kvfold/core';
import { HEAD_SPLITS, LINK_SEGMENTS_BYTES_PER_SLOT, type KernelThreads } from '@kvfold/wasm-kernels';
import type { WasmPool } from '../wasm-heap.js';
import { pointers } from './layer.js';

/**
 * linkSegments in wasm: the same integers as core's reference (which runs when an array is not in the heap),
 * split by heads over `threads`. The links' check runs in wasm too (core's TypeScript check reads every link).
 */
export function wasmLinkSegments(pool: WasmPool, threads: KernelThreads): KernelImplementation<LinkSegmentsCall<HostTensor>, Pick<SegmentPlan<HostTensor>, 'segment' | 'pivot'>> {
  return {
    screen(call) {
      const p = pool.heap.pointer(call.links.data as Int32Array);
      if (p >= 0) return { valid: pool.heap.kernels.screenLinks(p, call.heads, call.length, call.count) === 1 };
      linkSegmentsKernel.contents!(call, (t) => t as HostTensor);
      return { valid: true };
    },
    run(call) {
      const { heads: H, length: L, count: C } = call;
      const M = L - C;
      const segment = pool.int32(H * L);
      const pivot = pool.int32(H * M);
      const p = pointers(pool.heap, [call.links.data as Int32Array, call.scores.data as Float32Array, segment, pivot]);
      if (!p || H === 0) {
        pool.release(segment);
        pool.release(pivot);
        return linkSegmentsKernel.reference(call, pool);
      }
      const slots = threads.slots(H, H * L * LINK_SEGMENTS_BYTES_PER_SLOT);
      threads.run('linkSegments', [...p, H, L, C], HEAD_SPLITS.linkSegments(L, C), Array.from({ length: slots }, () => []));
      return { segment: { dtype: 'int32', shape: [H, L], data: segment }, pivot: { dtype: 'int32', shape: [H, M], data: pivot } };
    },
  };
}
