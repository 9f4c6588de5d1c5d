import * as tf from '@tensorflow/tfjs-core';
import { mergeSimilarKernel, referenceOnHost, type HostTensor, type KernelImplementation, type MergeSimilarCall, type SimilarMerge } from '@kvfold/core';
import { HEAD_SPLITS } from '@kvfold/wasm-kernels';
import { engineKernels, layerOf, layerOutputs, offsetOf, offsetsIn, registerWasmKernel, runSplit, threadsOf, type Split } from './heap.js';

/**
 * The tfjs kernel: inputs `keys, values, positions, counts, scores, protect`; attrs `count`, `minSimilarity`,
 * `sigma`, `byCount`; outputs the five merged fields, then `lowest [H]` and `eligible [H]`.
 */
export const KVFOLD_MERGE_SIMILAR = 'KvfoldMergeSimilar';

registerWasmKernel(KVFOLD_MERGE_SIMILAR, (ek, inputs, attrs) => {
  const { engine, kernels } = ek;
  const { keys, values, positions, counts, scores, protect } = inputs as Record<string, tf.TensorInfo>;
  const [H, L, D] = keys!.shape as [number, number, number];
  const C = attrs.count as number;
  const M = L - C;
  const out = [...layerOutputs(engine, H, M, D), engine.makeOutput([H], 'float32'), engine.makeOutput([H], 'int32')];
  const at = (t: tf.TensorInfo): number => offsetOf(engine, t);
  const ins = [keys!, values!, positions!, counts!, scores!, protect!].map(at);
  const P = protect!.shape[1]!;
  const args = [...ins, H, L, D, P, C, attrs.minSimilarity as number, attrs.sigma as number, attrs.byCount ? 1 : 0, ...out.map(at)];
  // Per thread: one scratch block (a head's cosines, plan, selection histograms, member rows and weights).
  runSplit(ek, threadsOf(attrs), 'mergeSimilar', args, HEAD_SPLITS.mergeSimilar(L, D, M, P), H * L * D * 4, [kernels.mergeSimilarScratch(L, C)]);
  return out;
});

/** A host copy of a tfjs tensor (what core's reference and content check read). */
function hostOf(t: unknown): HostTensor {
  const x = t as tf.Tensor;
  return x.dtype === 'int32' ? { dtype: 'int32', shape: x.shape, data: x.dataSync() as Int32Array } : { dtype: 'float32', shape: x.shape, data: x.dataSync() as Float32Array };
}

/**
 * mergeSimilar as kvfold's wasm kernel on the engine's heap, head by head (the reference backend's code, so its
 * results), with the content check in wasm where the tensors lie. Empty layers and tensors of another engine
 * take core's reference on host copies.
 */
export function wasmMergeSimilar(split: Split): KernelImplementation<MergeSimilarCall<tf.Tensor>, SimilarMerge<tf.Tensor>> {
  return {
    screen(call) {
      const { heads: H, length: L } = call.dims;
      const { engine, kernels } = engineKernels(tf.backend());
      const p = H * L > 0 ? offsetsIn(engine, [call.plan.protect, call.layer.counts]) : undefined;
      if (!p) {
        mergeSimilarKernel.contents!(call, hostOf);
        return { valid: true };
      }
      return { valid: kernels.screenSimilar(p[0]!, p[1]!, H, L, call.protectedSlots, call.byCount ? 1 : 0) === 1 };
    },
    run(call) {
      const { heads: H, length: L, headDim: D } = call.dims;
      const { engine } = engineKernels(tf.backend());
      const { keys, values, positions, counts, scores } = call.layer;
      const { protect } = call.plan;
      if (H * L * D === 0 || !offsetsIn(engine, [keys, values, positions, counts, scores, protect])) {
        const upload = (t: HostTensor): tf.Tensor => tf.tensor(t.data, [...t.shape], t.dtype);
        return referenceOnHost(mergeSimilarKernel, call, { isTensor: (v) => v instanceof tf.Tensor, read: hostOf, upload }) as SimilarMerge<tf.Tensor>;
      }
      const attrs = { count: call.plan.count, minSimilarity: call.plan.minSimilarity, sigma: call.plan.sigma, byCount: call.byCount, ...split };
      const out = tf.engine().runKernel(KVFOLD_MERGE_SIMILAR, { keys, values, positions, counts, scores, protect }, attrs) as tf.Tensor[];
      return { layer: layerOf(out.slice(0, 5)), lowest: out[5]!, eligible: out[6]! };
    },
  };
}
