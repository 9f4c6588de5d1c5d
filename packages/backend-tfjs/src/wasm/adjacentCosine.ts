import * as tf from '@tensorflow/tfjs-core';
import type { AdjacentCosineCall, KernelImplementation } from '@kvfold/core';
import { adjacentCosine as composite } from '../kernels/adjacentCosine.js';
import { HEAD_SPLITS } from '@kvfold/wasm-kernels';
import { offsetOf, registerWasmKernel, runSplit, threadsOf, type Split } from './heap.js';

/** The tfjs kernel: input `keys [H, L, D]`; output the cosine of each slot with the next, `[H, L - 1]`. */
export const KVFOLD_ADJACENT_COSINE = 'KvfoldAdjacentCosine';

registerWasmKernel(KVFOLD_ADJACENT_COSINE, (ek, inputs, attrs) => {
  const { engine } = ek;
  const keys = inputs.keys!;
  const [H, L, D] = keys.shape as [number, number, number];
  const out = engine.makeOutput([H, L - 1], 'float32');
  runSplit(ek, threadsOf(attrs), 'adjacentCosine', [offsetOf(engine, keys), offsetOf(engine, out), H, L, D], HEAD_SPLITS.adjacentCosine(L, D), H * L * D * 4, []);
  return out;
});

/** adjacentCosine as kvfold's wasm SIMD kernel on the engine's heap (bit-identical to the reference); composite for fewer than two slots. */
export function wasmAdjacentCosine(split: Split): KernelImplementation<AdjacentCosineCall<tf.Tensor>, tf.Tensor> {
  return {
    run(call) {
      const [H, L] = call.shape;
      if (H === 0 || L < 2) return composite.run(call, undefined);
      return tf.engine().runKernel(KVFOLD_ADJACENT_COSINE, { keys: call.keys }, { ...split });
    },
  };
}
