import * as tf from '@tensorflow/tfjs-core';
import { linkSegmentsKernel, type KernelImplementation, type LinkSegmentsCall, type SegmentPlan } from '@kvfold/core';
import { HEAD_SPLITS, LINK_SEGMENTS_BYTES_PER_SLOT } from '@kvfold/wasm-kernels';
import { engineKernels, offsetOf, offsetsIn, registerWasmKernel, runSplit, threadsOf, type Split } from './heap.js';

/** The tfjs kernel: inputs `links [H, C]`, `scores [H, L]`; outputs int32 `segment [H, L]` and `pivot [H, L - C]`. */
export const KVFOLD_LINK_SEGMENTS = 'KvfoldLinkSegments';

registerWasmKernel(KVFOLD_LINK_SEGMENTS, (ek, inputs, attrs) => {
  const { engine } = ek;
  const { links, scores } = inputs as Record<string, tf.TensorInfo>;
  const [H, L] = scores!.shape as [number, number];
  const C = links!.shape[1]!;
  const segment = engine.makeOutput([H, L], 'int32');
  const pivot = engine.makeOutput([H, L - C], 'int32');
  const args = [offsetOf(engine, links!), offsetOf(engine, scores!), offsetOf(engine, segment), offsetOf(engine, pivot), H, L, C];
  runSplit(ek, threadsOf(attrs), 'linkSegments', args, HEAD_SPLITS.linkSegments(L, C), H * L * LINK_SEGMENTS_BYTES_PER_SLOT, []);
  return [segment, pivot];
});

/**
 * linkSegments as kvfold's wasm kernel on the engine's heap (the reference backend's code, the same integers as
 * core's reference), with the links' check in wasm where they lie (links of another engine are downloaded and
 * checked on the host). Empty calls make empty tensors.
 */
export function wasmLinkSegments(split: Split): KernelImplementation<LinkSegmentsCall<tf.Tensor>, Pick<SegmentPlan<tf.Tensor>, 'segment' | 'pivot'>> {
  return {
    screen(call) {
      if (call.heads * call.count === 0) return { valid: true };
      const { engine, kernels } = engineKernels(tf.backend());
      const p = offsetsIn(engine, [call.links]);
      if (p) return { valid: kernels.screenLinks(p[0]!, call.heads, call.length, call.count) === 1 };
      // Links of another engine: core's check on a download (it throws the precise error).
      linkSegmentsKernel.contents!(call, (t) => ({ dtype: 'int32', shape: (t as tf.Tensor).shape, data: (t as tf.Tensor).dataSync() as Int32Array }));
      return { valid: true };
    },
    run({ links, scores, heads: H, length: L, count: C }) {
      if (H * L === 0) return { segment: tf.zeros([H, L], 'int32'), pivot: tf.zeros([H, L - C], 'int32') };
      const [segment, pivot] = tf.engine().runKernel(KVFOLD_LINK_SEGMENTS, { links, scores }, { ...split }) as tf.Tensor[];
      return { segment: segment!, pivot: pivot! };
    },
  };
}
