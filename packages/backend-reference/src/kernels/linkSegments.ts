import { linkSegmentsKernel, type HostTensor, type KernelImplementation, type LinkSegmentsCall, type SegmentPlan } from '@kvfold/core';
import type { KernelThreads } from '../threads.js';
import type { WasmPool } from '../wasm-heap.js';
import { pointers } from './layer.js';

/**
 * What one slot counts for in {@link KernelThreads.slots}'s threshold (calibrated in bytes of keys that gather
 * and adjacentCosine move), so that the default 4 MiB splits calls from 524,288 slots up. With 32 heads, calls
 * back to back: two threads lost at 4,096 slots a head (0.56 against 0.31 ms), broke even at 8,192 (0.66 / 0.62)
 * and won at 16,384 (0.80 / 1.33).
 */
export const LINK_SEGMENTS_BYTES_PER_SLOT = 8;

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
      threads.run('linkSegments', [...p, H, L, C], [C * 4, L * 4, L * 4, M * 4, 0, 0, 0], 4, Array.from({ length: slots }, () => []));
      return { segment: { dtype: 'int32', shape: [H, L], data: segment }, pivot: { dtype: 'int32', shape: [H, M], data: pivot } };
    },
  };
}
