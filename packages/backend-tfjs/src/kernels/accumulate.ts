import * as tf from '@tensorflow/tfjs-core';
import type { AccumulateCall, KernelImplementation } from '@kvfold/core';

/** Element-wise `scores + attention` (H2O's score update), both float32 `[kvHeads, length]`. */
export const accumulate: KernelImplementation<AccumulateCall<tf.Tensor>, tf.Tensor> = {
  run: ({ scores, attention }) => tf.add(scores, attention),
};
