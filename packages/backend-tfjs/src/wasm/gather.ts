import * as tf from '@tensorflow/tfjs-core';
import { gatherKernel, type GatherCall, type KernelImplementation, type LayerCache } from '@kvfold/core';
import { gather as composite } from '../kernels/gather.js';
import { HEAD_SPLITS } from '@kvfold/wasm-kernels';
import { engineKernels, heapView, layerOf, layerOutputs, offsetOf, registerWasmKernel, runSplit, threadsOf, type Split } from './heap.js';

/** The tfjs kernel: inputs `keys, values, positions, counts, scores, index`; attr `k`; outputs the five gathered fields. */
export const KVFOLD_GATHER = 'KvfoldGather';

registerWasmKernel(KVFOLD_GATHER, (ek, inputs, attrs) => {
  const { engine } = ek;
  const { keys, values, positions, counts, scores, index } = inputs as Record<string, tf.TensorInfo>;
  const [H, L, D] = keys!.shape as [number, number, number];
  const k = attrs.k as number;
  const out = layerOutputs(engine, H, k, D);
  const at = (t: tf.TensorInfo): number => offsetOf(engine, t);
  const args = [at(keys!), at(values!), at(positions!), at(counts!), at(scores!), at(index!), H, L, D, k, ...out.map(at)];
  runSplit(ek, threadsOf(attrs), 'gather', args, HEAD_SPLITS.gather(L, D, k), H * L * D * 4, []);
  return out;
});

/**
 * gather as kvfold's wasm kernel on the engine's heap (key and value rows copied side by side, the scalars of
 * a run of consecutive slots as one `memory.copy`). The index check is core's own, on a view of the index in the heap (no download); the composite
 * tfjs program runs for empty layers and tensors that live in another engine.
 */
export function wasmGather(split: Split): KernelImplementation<GatherCall<tf.Tensor>, LayerCache<tf.Tensor>, boolean> {
  return {
    screen(call) {
      const index = heapView(engineKernels(tf.backend()).engine, call.index as tf.Tensor);
      if (!index) return composite.screen!(call);
      // gather's content check reads the index alone.
      gatherKernel.contents!(call, () => index);
      return { valid: true, note: false };
    },
    run(call, note) {
      const { heads: H, length: L } = call.dims;
      if (H * call.k === 0 || L === 0) return composite.run(call, note);
      const { keys, values, positions, counts, scores } = call.layer;
      return layerOf(tf.engine().runKernel(KVFOLD_GATHER, { keys, values, positions, counts, scores, index: call.index }, { k: call.k, ...split }));
    },
  };
}
