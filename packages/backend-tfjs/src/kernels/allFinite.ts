import * as tf from '@tensorflow/tfjs-core';
import type { AllFiniteCall, KernelImplementation } from '@kvfold/core';

/**
 * True when every element of `tensor` is finite; int32 tensors always are.
 *
 * `x * 0` is 0 for every finite `x` and NaN for an infinity or NaN, so the sum of `x * 0` is exactly 0
 * unless some element is not finite: two passes over the tensor (a scalar multiply and a sum) and one
 * scalar download, instead of isNaN, isInf, a logical or and a reduction (wasm's logical ops alone cost
 * about 30 ns per element).
 */
export const allFinite: KernelImplementation<AllFiniteCall<tf.Tensor>, Promise<boolean>> = { run: finite };

async function finite({ tensor, dtype, size }: AllFiniteCall<tf.Tensor>): Promise<boolean> {
  if (dtype === 'int32' || size === 0) return true;
  const probe = tf.tidy(() => tf.sum(tf.mul(tensor, tf.scalar(0))));
  try {
    return (await probe.data())[0] === 0;
  } finally {
    probe.dispose();
  }
}
