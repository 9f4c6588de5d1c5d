import * as tf from '@tensorflow/tfjs-core';
import type { AllFiniteCall, KernelImplementation } from '@kvfold/core';
import { takeRows } from '../ops.js';

/**
 * True when every element of `tensor` (of slots `from..` along axis 1, when the call has one) is finite
 * and, with a bound, smaller than it in magnitude; int32 tensors always are.
 *
 * `x * 0` is 0 for every finite `x` and NaN for an infinity or NaN, so the sum of `x * 0` is exactly 0
 * unless some element is not finite: two passes over the tensor (a scalar multiply and a sum) and one
 * scalar download, instead of isNaN, isInf, a logical or and a reduction (wasm's logical ops alone cost
 * about 30 ns per element). With a bound, `x` is first multiplied by the call's `scale`
 * (`2^(128 - log2 bound)`), which overflows to infinity exactly where `|x| >= bound`. The newest slots of
 * each head are taken as rows (an index built on the engine: nothing is uploaded or checked).
 */
export const allFinite: KernelImplementation<AllFiniteCall<tf.Tensor>, Promise<boolean>> = { run: finite };

async function finite({ tensor, dtype, shape, size, scale, from }: AllFiniteCall<tf.Tensor>): Promise<boolean> {
  if (dtype === 'int32' || size === 0 || (from > 0 && from === shape[1])) return true;
  const probe = tf.tidy(() => {
    let x = tensor;
    if (from > 0) {
      const [H, L] = shape as [number, number];
      const T = L - from;
      const rows = tf.reshape(tensor, [H * L, size / (H * L)]);
      const first = tf.reshape(tf.mul(tf.range(0, H, 1, 'int32'), tf.scalar(L, 'int32')), [H, 1]);
      x = takeRows(rows, tf.reshape(tf.add(first, tf.reshape(tf.range(from, L, 1, 'int32'), [1, T])), [H * T]));
    }
    return tf.sum(tf.mul(scale === undefined ? x : tf.mul(x, tf.scalar(scale)), tf.scalar(0)));
  });
  try {
    return (await probe.data())[0] === 0;
  } finally {
    probe.dispose();
  }
}
