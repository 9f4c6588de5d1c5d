import * as tf from '@tensorflow/tfjs-core';
import { mergeIntoNeighbours as composite } from '../kernels/mergeIntoNeighbours.js';
import { HEAD_SPLITS } from '@kvfold/wasm-kernels';
import { engineKernels, layerOf, layerOutputs, offsetOf, offsetsIn, registerWasmKernel, runSplit, threadsOf, type Split } from './heap.js';

/**
 * The tfjs kernel: inputs `keys, values, positions, counts, scores, keep, source, targetStart, targetCount,
 * gate`; outputs the five fields of the kept slots, values merged.
 */
export const KVFOLD_MERGE_INTO_NEIGHBOURS = 'KvfoldMergeIntoNeighbours';

registerWasmKernel(KVFOLD_MERGE_INTO_NEIGHBOURS, (ek, inputs, attrs) => {
  const { engine } = ek;
  const { keys, values, positions, counts, scores, keep, source, targetStart, targetCount, gate } = inputs as Record<string, tf.TensorInfo>;
  const [H, L, D] = keys!.shape as [number, number, number];
  const K = keep!.shape[1]!;
  const S = source!.shape[1]!;
  const out = layerOutputs(engine, H, K, D);
  const at = (t: tf.TensorInfo): number => offsetOf(engine, t);
  const ins = [keys!, values!, positions!, counts!, scores!, keep!, source!, targetStart!, targetCount!, gate!].map(at);
  // Per thread: sources in window order, block starts and fill per kept slot, and the forward / backward block
  // sums (float32, at most K slots wide: a window never leaves the kept set), as the reference kernel uses.
  runSplit(ek, threadsOf(attrs), 'mergeIntoNeighbours', [...ins, H, L, D, K, S, ...out.map(at)], HEAD_SPLITS.mergeIntoNeighbours(L, D, K, S), H * L * D * 4, [S * 4, (K + 1) * 4, (K + 1) * 4, K * D * 4, K * D * 4]);
  return out;
});

/**
 * mergeIntoNeighbours (CaM) as kvfold's wasm SIMD kernel on the engine's heap, bit-identical to the
 * reference; the plan's content checks run in wasm where the plan lies. The composite tfjs program runs
 * for empty layers and for tensors in another engine.
 */
export function wasmMergeIntoNeighbours(split: Split): typeof composite {
  return {
    screen(call) {
      const { heads: H, length: L } = call.dims;
      const { engine, kernels } = engineKernels(tf.backend());
      const { keep, source, targetStart, targetCount, gate } = call.plan;
      const p = H > 0 && L > 0 ? offsetsIn(engine, [keep, source, targetStart, targetCount, gate] as tf.Tensor[]) : undefined;
      if (!p) return composite.screen!(call);
      return { valid: kernels.screenNeighbours(...p, H, L, call.kept, call.sources) === 1 };
    },
    run(call, note) {
      const { heads: H, length: L, headDim: D } = call.dims;
      // The composite takes its screen's facts, or computes them when the screen went the wasm way.
      if (H * call.kept === 0 || L === 0 || D === 0) return composite.run(call, note);
      const { keys, values, positions, counts, scores } = call.layer;
      const { keep, source, targetStart, targetCount, gate } = call.plan;
      return layerOf(tf.engine().runKernel(KVFOLD_MERGE_INTO_NEIGHBOURS, { keys, values, positions, counts, scores, keep, source, targetStart, targetCount, gate }, { ...split }));
    },
  };
}
