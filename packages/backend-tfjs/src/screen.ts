import * as tf from '@tensorflow/tfjs-core';
import type { TensorMeta } from '@kvfold/core';

/**
 * What the tfjs backend adds to core's argument checks. Core validates every kernel call (shapes, dtypes,
 * options, contents) with the same messages on every backend; it only needs to know what a value is
 * ({@link inspectTensor}). Checking contents (index ranges, plan structure) on the host would download
 * the tensors on every call, so the kernels that take indices or plans "screen" them first: a tensor
 * program reduces every rule to one boolean, read back with a single scalar download, and core's host
 * check (which downloads them) runs only when that flag is set, to name the first bad element.
 * @module
 */

/** True for a tfjs tensor (tfjs-core makes `instanceof` structural, so another tfjs-core copy's tensors pass too). */
export function isTensor(t: unknown): t is tf.Tensor {
  return typeof t === 'object' && t !== null && t instanceof tf.Tensor;
}

/** A live tfjs tensor's shape and dtype, or why `value` is not one. */
export function inspectTensor(value: unknown): TensorMeta | string {
  if (!isTensor(value)) return 'is not a tfjs-backend tensor (tf.Tensor); upload host data with kernels.fromHost()';
  if (value.isDisposed) return 'was disposed and can no longer be used';
  if (value.dtype !== 'float32' && value.dtype !== 'int32') return `has dtype ${value.dtype}; kvfold kernels exchange float32 and int32 tensors`;
  // A tf.Tensor carries its shape and (now known) dtype itself: no object per call on the hot path.
  return value as unknown as TensorMeta;
}

/** True (bool scalar) when any element of a boolean tensor is set; false for an empty tensor. */
export function anyOf(flags: readonly tf.Tensor[]): tf.Tensor {
  const parts = flags.filter((f) => f.size > 0).map((f) => tf.any(f));
  if (parts.length === 0) return tf.scalar(false, 'bool');
  return parts.length === 1 ? parts[0]! : tf.any(tf.stack(parts));
}

/** Run a screen: `flag` builds a boolean scalar (true = some rule is broken), read back with one scalar download. */
export function screened(flag: () => tf.Tensor): { readonly valid: boolean } {
  const t = tf.tidy(flag);
  try {
    return { valid: t.dataSync()[0] === 0 };
  } finally {
    t.dispose();
  }
}

/**
 * Whether every per-block boolean scalar in `flags` is true, read back with one scalar download for all
 * blocks; disposes the flags. Block-wise kernels use it to confirm a fast path held everywhere.
 */
export function allOf(flags: readonly tf.Tensor[]): boolean {
  const all = tf.tidy(() => tf.all(tf.stack([...flags])));
  try {
    return all.dataSync()[0] === 1;
  } finally {
    all.dispose();
    for (const f of flags) f.dispose();
  }
}
