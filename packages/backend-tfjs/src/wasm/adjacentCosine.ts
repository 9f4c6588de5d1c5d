import * as tf from '@tensorflow/tfjs-core';
import type { AdjacentCosineCall, KernelImplementation } from '@kvfold/core';
import { adjacentCosine as composite } from '../kernels/adjacentCosine.js';
import { offsetOf, registerWasmKernel } from './heap.js';

/** The tfjs kernel: input `keys [H, L, D]`; output the cosine of each slot with the next, `[H, L - 1]`. */
export const KVFOLD_ADJACENT_COSINE = 'KvfoldAdjacentCosine';

registerWasmKernel(KVFOLD_ADJACENT_COSINE, ({ engine, kernels }, inputs) => {
  const keys = inputs.keys!;
  const [H, L, D] = keys.shape as [number, number, number];
  const out = engine.makeOutput([H, L - 1], 'float32');
  kernels.adjacentCosine(offsetOf(engine, keys), offsetOf(engine, out), H, L, D);
  return out;
});

/** adjacentCosine as kvfold's wasm SIMD kernel on the engine's heap (bit-identical to the reference); composite for fewer than two slots. */
export const wasmAdjacentCosine: KernelImplementation<AdjacentCosineCall<tf.Tensor>, tf.Tensor> = {
  run(call) {
    const [H, L] = call.shape;
    if (H === 0 || L < 2) return composite.run(call, undefined);
    return tf.engine().runKernel(KVFOLD_ADJACENT_COSINE, { keys: call.keys });
  },
};
