import * as tf from '@tensorflow/tfjs-core';
import { topKKernel, type HostTensor, type KernelImplementation, type TopKCall } from '@kvfold/core';
import { topK as composite } from '../kernels/topK.js';
import { offsetOf, registerWasmKernel } from './heap.js';

/** The tfjs kernel: input `scores [H, L]`; attrs `k`, `from`, `to`; output the int32 `[H, k]` winners, ascending. */
export const KVFOLD_TOP_K = 'KvfoldTopK';

registerWasmKernel(KVFOLD_TOP_K, ({ engine }, inputs, attrs) => {
  const scores = inputs.scores!;
  const [H, L] = scores.shape as [number, number];
  const k = attrs.k as number;
  // The output first: allocating may grow the heap, which detaches every view of it made before.
  const out = engine.makeOutput([H, k], 'int32');
  const buffer = engine.wasm.HEAPU8.buffer;
  const view: HostTensor = { dtype: 'float32', shape: [H, L], data: new Float32Array(buffer, offsetOf(engine, scores), H * L) };
  const result = new Int32Array(buffer, offsetOf(engine, out), H * k);
  // core's radix selection, on the scores where they lie; its one allocation is the output above.
  topKKernel.reference({ scores: view, k, from: attrs.from as number, to: attrs.to as number, heads: H, length: L }, { int32: () => result, float32: (n) => new Float32Array(n) });
  return out;
});

/**
 * topK as core's own radix selection (O(length) per head, no sort) run on the scores in the engine's heap,
 * writing the engine's output tensor: no download, no upload. tfjs's TopK sorts (and ranks NaN first, so
 * the composite maps the scores before two TopKs). The composite runs for empty selections.
 */
export const wasmTopK: KernelImplementation<TopKCall<tf.Tensor>, tf.Tensor> = {
  run(call) {
    if (call.k === 0 || call.heads === 0) return composite.run(call, undefined);
    return tf.engine().runKernel(KVFOLD_TOP_K, { scores: call.scores }, { k: call.k, from: call.from, to: call.to });
  },
};
