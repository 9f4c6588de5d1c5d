import { ConfigError, DTypeError, ShapeError, type DType, type HostTensor, type LayerCache, type TypedArrayFor } from '@kvfold/core';

/**
 * Argument checks shared by the reference kernels. Every check is O(size of the argument) and runs
 * before a kernel's loops, so the loops themselves never test for bad input.
 * @module
 */

/** Dimensions of a validated layer. */
export interface LayerDims {
  /** kv heads. */
  readonly heads: number;
  /** Slots per head. */
  readonly length: number;
  /** Head dimension. */
  readonly headDim: number;
}

/** `[2, 3]` for messages. */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * Check that `t` is a host tensor of `dtype` and rank `rank` whose data matches its shape; returns its data.
 * `field` names the argument in errors, e.g. `topK scores`.
 * @throws ShapeError when `t` is not a host tensor, has another rank, or its data does not fill its shape.
 * @throws DTypeError when the dtype or the typed array differs from `dtype`.
 */
export function tensorData<D extends DType>(t: HostTensor, field: string, dtype: D, rank: number): TypedArrayFor<D> {
  if (typeof t !== 'object' || t === null || !Array.isArray(t.shape) || t.data === undefined) {
    throw new ShapeError(`${field} is not a reference-backend tensor (expected { dtype, shape, data }); upload host data with kernels.fromHost()`, { field });
  }
  if (t.dtype !== dtype) throw new DTypeError(field, String(t.dtype), [dtype]);
  const okArray = dtype === 'float32' ? t.data instanceof Float32Array : t.data instanceof Int32Array;
  if (!okArray) throw new DTypeError(field, `${String(t.dtype)} (backed by ${(t.data as object).constructor.name})`, [dtype]);
  if (t.shape.length !== rank) {
    throw new ShapeError(`${field} must have rank ${rank}, got shape ${fmtShape(t.shape)}`, { field, shape: t.shape });
  }
  let n = 1;
  for (const d of t.shape) {
    if (!Number.isInteger(d) || d < 0) throw new ShapeError(`${field} has invalid dimension ${d} in shape ${fmtShape(t.shape)}`, { field, shape: t.shape });
    n *= d;
  }
  if (t.data.length !== n) {
    throw new ShapeError(`${field} holds ${t.data.length} elements but its shape ${fmtShape(t.shape)} needs ${n}`, { field, shape: t.shape, length: t.data.length });
  }
  return t.data as TypedArrayFor<D>;
}

/** Throw unless `shape` equals `want` exactly. */
export function expectShape(shape: readonly number[], want: readonly number[], field: string): void {
  let same = shape.length === want.length;
  for (let i = 0; same && i < want.length; i++) same = shape[i] === want[i];
  if (!same) throw new ShapeError(`${field} must be ${fmtShape(want)}, got ${fmtShape(shape)}`, { field, shape, expected: want });
}

/** The five data arrays of a validated layer, with its dimensions. */
export interface LayerData extends LayerDims {
  /** float32 `[H, L, D]`. */
  readonly keys: Float32Array;
  /** float32 `[H, L, D]`. */
  readonly values: Float32Array;
  /** int32 `[H, L]`. */
  readonly positions: Int32Array;
  /** int32 `[H, L]`. */
  readonly counts: Int32Array;
  /** float32 `[H, L]`. */
  readonly scores: Float32Array;
}

/**
 * Check every field of a layer (dtypes, ranks, agreeing dimensions) and return its arrays.
 * @throws ShapeError or DTypeError naming `<kernel> layer.<field>`.
 */
export function layerData(layer: LayerCache<HostTensor>, kernel: string): LayerData {
  if (typeof layer !== 'object' || layer === null) throw new ShapeError(`${kernel}: layer must be a LayerCache object`, { field: 'layer' });
  const keys = tensorData(layer.keys, `${kernel} layer.keys`, 'float32', 3);
  const [heads, length, headDim] = layer.keys.shape as [number, number, number];
  const values = tensorData(layer.values, `${kernel} layer.values`, 'float32', 3);
  expectShape(layer.values.shape, layer.keys.shape, `${kernel} layer.values`);
  const positions = tensorData(layer.positions, `${kernel} layer.positions`, 'int32', 2);
  expectShape(layer.positions.shape, [heads, length], `${kernel} layer.positions`);
  const counts = tensorData(layer.counts, `${kernel} layer.counts`, 'int32', 2);
  expectShape(layer.counts.shape, [heads, length], `${kernel} layer.counts`);
  const scores = tensorData(layer.scores, `${kernel} layer.scores`, 'float32', 2);
  expectShape(layer.scores.shape, [heads, length], `${kernel} layer.scores`);
  return { heads, length, headDim, keys, values, positions, counts, scores };
}

/** Throw unless `value` is an integer within `[min, max]`. */
export function expectInt(value: number, field: string, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ShapeError(`${field} = ${value} must be an integer in [${min}, ${max}]`, { field, value, allowed: [min, max] });
  }
}

/**
 * Check that every entry of an int32 index tensor lies in `[0, length)`, naming the first offender.
 * @throws ShapeError
 */
export function expectIndices(data: Int32Array, perHead: number, length: number, field: string): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v < 0 || v >= length) {
      const h = perHead === 0 ? 0 : Math.floor(i / perHead);
      throw new ShapeError(`${field}[${h}, ${i - h * perHead}] = ${v} is out of range; slot indices must be in [0, ${length - 1}]`, {
        field,
        head: h,
        index: i - h * perHead,
        value: v,
        allowed: [0, length - 1],
      });
    }
  }
}

/**
 * Check that every count is at least 1 (a slot stands for at least one token), when a kernel divides
 * by counts or takes their logarithm.
 * @throws ShapeError
 */
export function expectPositiveCounts(counts: Int32Array, length: number, field: string): void {
  for (let i = 0; i < counts.length; i++) {
    if (counts[i]! < 1) {
      const h = length === 0 ? 0 : Math.floor(i / length);
      throw new ShapeError(`${field}[${h}, ${i - h * length}] = ${counts[i]} must be >= 1`, { field, head: h, index: i - h * length, value: counts[i] });
    }
  }
}

/**
 * Throw a {@link ConfigError} for one bad option or plan field; `context` is e.g. `observe options`,
 * `path` the JSON pointer of the field inside it.
 */
export function badOption(context: string, path: string, rule: string, message: string, allowed?: unknown): never {
  throw new ConfigError([{ path, rule, message, allowed }], context);
}

/** A float32 host tensor over `data` (no copy). */
export function f32(shape: readonly number[], data: Float32Array): HostTensor<'float32'> {
  return { dtype: 'float32', shape, data };
}

/** An int32 host tensor over `data` (no copy). */
export function i32(shape: readonly number[], data: Int32Array): HostTensor<'int32'> {
  return { dtype: 'int32', shape, data };
}
