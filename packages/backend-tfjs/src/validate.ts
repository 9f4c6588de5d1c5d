import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, DTypeError, ShapeError, type DType, type LayerCache } from '@kvfold/core';

/**
 * Argument checks of the tfjs kernels. tfjs's own errors name its internal ops (`GatherV2: the index
 * value 5 is not in [0, 2]`) or, on wasm, do not happen at all (out-of-range reads return garbage), so
 * every kernel checks its arguments here first and throws a typed core error naming the kernel argument.
 *
 * Shape and dtype checks are plain JavaScript. Checks on tensor contents (index ranges, plan structure)
 * run as tensor programs that reduce to one boolean, read back with a single scalar download; only when
 * that flag is set is the offending tensor downloaded, to name the first bad element.
 * @module
 */

/** `[2, 3]` for messages. */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** True for a tfjs tensor (tfjs-core makes `instanceof` structural, so another tfjs-core copy's tensors pass too). */
export function isTensor(t: unknown): t is tf.Tensor {
  return typeof t === 'object' && t !== null && t instanceof tf.Tensor;
}

/**
 * Check that `t` is a live tfjs tensor of `dtype` and `rank`; returns its dimensions.
 * @throws ShapeError when `t` is not a tf.Tensor, was disposed, or has another rank; DTypeError on dtype.
 */
export function dimsOf(t: unknown, field: string, dtype: DType, rank: number): number[] {
  if (!isTensor(t)) throw new ShapeError(`${field} is not a tfjs-backend tensor (tf.Tensor); upload host data with kernels.fromHost()`, { field });
  if (t.isDisposed) throw new ShapeError(`${field} was disposed and can no longer be used`, { field });
  if (t.dtype !== dtype) throw new DTypeError(field, t.dtype, [dtype]);
  if (t.rank !== rank) throw new ShapeError(`${field} must have rank ${rank}, got shape ${fmtShape(t.shape)}`, { field, shape: [...t.shape] });
  return [...t.shape];
}

/** Throw unless `shape` equals `want`. */
export function expectShape(shape: readonly number[], want: readonly number[], field: string): void {
  let same = shape.length === want.length;
  for (let i = 0; same && i < want.length; i++) same = shape[i] === want[i];
  if (!same) throw new ShapeError(`${field} must be ${fmtShape(want)}, got ${fmtShape(shape)}`, { field, shape: [...shape], expected: [...want] });
}

/** Dimensions of a validated layer. */
export interface LayerDims {
  /** kv heads. */
  readonly heads: number;
  /** Slots per head. */
  readonly length: number;
  /** Head dimension. */
  readonly headDim: number;
}

/**
 * Check every field of a layer (dtype, rank, agreeing dimensions).
 * @throws ShapeError or DTypeError naming `<kernel> layer.<field>`.
 */
export function layerDims(layer: LayerCache<tf.Tensor>, kernel: string): LayerDims {
  if (typeof layer !== 'object' || layer === null) throw new ShapeError(`${kernel}: layer must be a LayerCache object`, { field: 'layer' });
  const [heads, length, headDim] = dimsOf(layer.keys, `${kernel} layer.keys`, 'float32', 3) as [number, number, number];
  expectShape(dimsOf(layer.values, `${kernel} layer.values`, 'float32', 3), [heads, length, headDim], `${kernel} layer.values`);
  expectShape(dimsOf(layer.positions, `${kernel} layer.positions`, 'int32', 2), [heads, length], `${kernel} layer.positions`);
  expectShape(dimsOf(layer.counts, `${kernel} layer.counts`, 'int32', 2), [heads, length], `${kernel} layer.counts`);
  expectShape(dimsOf(layer.scores, `${kernel} layer.scores`, 'float32', 2), [heads, length], `${kernel} layer.scores`);
  return { heads, length, headDim };
}

/** Throw unless `value` is an integer within `[min, max]`. */
export function expectInt(value: number, field: string, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ShapeError(`${field} = ${value} must be an integer in [${min}, ${max}]`, { field, value, allowed: [min, max] });
  }
}

/** Throw a {@link ConfigError} for one bad option or plan field. */
export function badOption(context: string, path: string, rule: string, message: string, allowed?: unknown): never {
  throw new ConfigError([{ path, rule, message, allowed }], context);
}

/**
 * Run a content check: `flag` builds a boolean scalar tensor (true = bad input) from tensor ops; it is
 * read back with one scalar download. When set, `diagnose` runs (it may download tensors) and must throw
 * the precise error; if it does not, a generic ShapeError naming `what` is thrown.
 */
export function checkContents(flag: () => tf.Tensor, diagnose: () => void, what: string): void {
  const t = tf.tidy(flag);
  let bad: boolean;
  try {
    bad = t.dataSync()[0] !== 0;
  } finally {
    t.dispose();
  }
  if (!bad) return;
  diagnose();
  throw new ShapeError(`${what} is invalid`, { field: what });
}

/** True (bool scalar) when any element of a boolean tensor is set; false for an empty tensor. */
export function anyOf(flags: readonly tf.Tensor[]): tf.Tensor {
  const parts = flags.filter((f) => f.size > 0).map((f) => tf.any(f));
  if (parts.length === 0) return tf.scalar(false, 'bool');
  return parts.length === 1 ? parts[0]! : tf.any(tf.stack(parts));
}

/** Host check of an int32 `[heads, perHead]` tensor already known to hold a bad entry: throws for the first entry outside `[min, max]`. */
export function hostRange(data: Int32Array, perHead: number, min: number, max: number, field: string, what = 'slot indices'): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v < min || v > max) {
      const h = perHead === 0 ? 0 : Math.floor(i / perHead);
      throw new ShapeError(`${field}[${h}, ${i - h * perHead}] = ${v} is out of range; ${what} must be in [${min}, ${max}]`, {
        field,
        head: h,
        index: i - h * perHead,
        value: v,
        allowed: [min, max],
      });
    }
  }
}
