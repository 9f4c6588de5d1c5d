import * as tf from '@tensorflow/tfjs-core';
import type { AllFiniteCall, KernelImplementation } from '@kvfold/core';

/**
 * True when every element of `tensor` is finite (and, with a bound, smaller than it in magnitude); int32
 * tensors always are.
 *
 * `x * 0` is 0 for every finite `x` and NaN for an infinity or NaN, so the sum of `x * 0` is exactly 0
 * unless some element is not finite: two passes over the tensor (a scalar multiply and a sum) and one
 * scalar download, instead of isNaN, isInf, a logical or and a reduction (wasm's logical ops alone cost
 * about 30 ns per element). With a bound, `x` is first multiplied by the call's `scale`
 * (`2^(128 - log2 bound)`), which overflows to infinity exactly where `|x| >= bound`.
 */
export const allFinite: KernelImplementation<AllFiniteCall<tf.Tensor>, Promise<boolean>> = { run: finite };

async function finite({ tensor, dtype, size, scale }: AllFiniteCall<tf.Tensor>): Promise<boolean> {
  if (dtype === 'int32' || size === 0) return true;
  const probe = tf.tidy(() => tf.sum(tf.mul(scale === undefined ? tensor : tf.mul(tensor, tf.scalar(scale)), tf.scalar(0))));
  try {
    return (await probe.data())[0] === 0;
  } finally {
    probe.dispose();
  }
}
