import * as tf from '@tensorflow/tfjs-core';
import type { KernelImplementation, LayerCache, MergeSegmentsCall } from '@kvfold/core';
import { mergeSegments as composite } from '../kernels/mergeSegments.js';
import { HEAD_SPLITS } from '@kvfold/wasm-kernels';
import { engineKernels, layerOf, layerOutputs, offsetOf, offsetsIn, registerWasmKernel, runSplit, threadsOf, withScratch, type Split } from './heap.js';

/**
 * The tfjs kernel: inputs `keys, values, positions, counts, scores, segment, pivot, sigma`; attrs
 * `outLength`, `byCount`; outputs the five merged fields.
 */
export const KVFOLD_MERGE_SEGMENTS = 'KvfoldMergeSegments';

registerWasmKernel(KVFOLD_MERGE_SEGMENTS, (ek, inputs, attrs) => {
  const { engine } = ek;
  const { keys, values, positions, counts, scores, segment, pivot, sigma } = inputs as Record<string, tf.TensorInfo>;
  const [H, L, D] = keys!.shape as [number, number, number];
  const M = attrs.outLength as number;
  // Run bounds per output slot (per head, so they split with the heads), as the reference kernel uses.
  return withScratch(engine, [H * M * 4, H * M * 4], ([start, end]) => {
    const out = layerOutputs(engine, H, M, D);
    const at = (t: tf.TensorInfo): number => offsetOf(engine, t);
    const ins = [keys!, values!, positions!, counts!, scores!, segment!, pivot!, sigma!].map(at);
    // Per thread: one head's member rows and weights (float64).
    runSplit(ek, threadsOf(attrs), 'mergeSegments', [...ins, H, L, D, M, attrs.byCount ? 1 : 0, ...out.map(at), start!, end!], HEAD_SPLITS.mergeSegments(L, D, M), H * L * D * 4, [L * 4, L * 8, L * 8]);
    return out;
  });
});

/**
 * mergeSegments (KVMerger) as kvfold's wasm SIMD kernel on the engine's heap, bit-identical to the
 * reference; the plan's content checks run in wasm on the plan where it lies (one pass, no download). The
 * composite tfjs program runs for empty layers and for tensors in another engine.
 */
export function wasmMergeSegments(split: Split): KernelImplementation<MergeSegmentsCall<tf.Tensor>, LayerCache<tf.Tensor>> {
  return {
    screen(call) {
      const { heads: H, length: L } = call.dims;
      const { engine, kernels } = engineKernels(tf.backend());
      const { segment, pivot, sigma } = call.plan;
      const p = H > 0 && L > 0 ? offsetsIn(engine, [segment, pivot, sigma, call.layer.counts] as tf.Tensor[]) : undefined;
      if (!p) return composite.screen!(call);
      return { valid: kernels.screenSegments(...p, H, L, call.outLength, call.byCount ? 1 : 0) === 1 };
    },
    run(call, note) {
      const { heads: H, length: L, headDim: D } = call.dims;
      if (H * call.outLength === 0 || L === 0 || D === 0) return composite.run(call, note);
      const { keys, values, positions, counts, scores } = call.layer;
      const { segment, pivot, sigma } = call.plan;
      return layerOf(tf.engine().runKernel(KVFOLD_MERGE_SEGMENTS, { keys, values, positions, counts, scores, segment, pivot, sigma }, { outLength: call.outLength, byCount: call.byCount, ...split }));
    },
  };
}
