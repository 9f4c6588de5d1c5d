import * as tf from '@tensorflow/tfjs-core';
import type { KernelImplementation, TopKCall } from '@kvfold/core';
import { HEAD_SPLITS, TOPK_BYTES_PER_SCORE, TOPK_HIST_WORDS } from '@kvfold/wasm-kernels';
import { topK as composite } from '../kernels/topK.js';
import { offsetOf, registerWasmKernel, runSplit, threadsOf, type Split } from './heap.js';

/** The tfjs kernel: input `scores [H, L]`; attrs `k`, `from`, `to`; output the int32 `[H, k]` winners, ascending. */
export const KVFOLD_TOP_K = 'KvfoldTopK';

registerWasmKernel(KVFOLD_TOP_K, (ek, inputs, attrs) => {
  const { engine } = ek;
  const scores = inputs.scores!;
  const [H, L] = scores.shape as [number, number];
  const k = attrs.k as number;
  const from = attrs.from as number;
  const to = attrs.to as number;
  const out = engine.makeOutput([H, k], 'int32');
  // Per thread: one head's keys, and the histograms with the shuffle table.
  runSplit(ek, threadsOf(attrs), 'topK', [offsetOf(engine, scores), offsetOf(engine, out), H, L, from, to, k], HEAD_SPLITS.topK(L, k), H * (to - from) * TOPK_BYTES_PER_SCORE, [(to - from) * 4, TOPK_HIST_WORDS * 4]);
  return out;
});

/**
 * topK as kvfold's wasm SIMD kernel (core's radix selection: O(length) per head, no sort, the same
 * winners as the reference) on the scores in the engine's heap, writing the engine's output tensor: no
 * download, no upload. tfjs's TopK sorts (and ranks NaN first, so the composite maps the scores before two
 * TopKs). The composite runs for empty selections.
 */
export function wasmTopK(split: Split): KernelImplementation<TopKCall<tf.Tensor>, tf.Tensor> {
  return {
    run(call) {
      if (call.k === 0 || call.heads === 0) return composite.run(call, undefined);
      return tf.engine().runKernel(KVFOLD_TOP_K, { scores: call.scores }, { k: call.k, from: call.from, to: call.to, ...split });
    },
  };
}
