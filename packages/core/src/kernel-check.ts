import { ConfigError, DTypeError, ShapeError } from './errors.js';
import type { CacheShape, LayerCache } from './kernels.js';
import type { DType, HostTensor } from './tensor.js';

/**
 * Argument checks of the kernels, written once for every backend: each kernel definition validates its
 * arguments with these before any backend runs, so every backend throws the same typed error with the
 * same message for the same bad input. A backend only says what a value is ({@link TensorMeta}) or why it
 * is not one of its tensors.
 * @module
 */

/** What a backend reports about one of its live tensors. */
export interface TensorMeta {
  /** Dimensions, outermost first. */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: DType;
}

/**
 * A backend's answer about a value: the meta of a live tensor of that backend, or a phrase saying why the
 * value is not one, read after the argument's name (`is not a tfjs-backend tensor (tf.Tensor); upload host
 * data with kernels.fromHost()`, `was disposed and can no longer be used`).
 */
export type TensorInspector = (value: unknown) => TensorMeta | string;

/** `[2, 3]` for messages. */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * Throw unless `shape` equals `want` exactly.
 * @throws ShapeError naming `field`, its shape and the expected one.
 */
export function expectShape(shape: readonly number[], want: readonly number[], field: string): void {
  let same = shape.length === want.length;
  for (let i = 0; same && i < want.length; i++) same = shape[i] === want[i];
  if (!same) throw new ShapeError(`${field} must be ${fmtShape(want)}, got ${fmtShape(shape)}`, { field, shape: [...shape], expected: [...want] });
}

/**
 * Throw unless `value` is an integer within `[min, max]`.
 * @throws ShapeError naming `field` and the allowed range.
 */
export function expectInt(value: number, field: string, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ShapeError(`${field} = ${value} must be an integer in [${min}, ${max}]`, { field, value, allowed: [min, max] });
  }
}

/**
 * Throw a {@link ConfigError} for one bad option or plan field; `context` is e.g. `observe options`,
 * `path` the JSON pointer of the field inside it.
 */
export function badOption(context: string, path: string, rule: string, message: string, allowed?: unknown): never {
  throw new ConfigError([{ path, rule, message, allowed }], context);
}

/** `[h, j]` of flat element `i` of a `[heads, perHead]` array. */
function at(i: number, perHead: number): [number, number] {
  const h = perHead === 0 ? 0 : Math.floor(i / perHead);
  return [h, i - h * perHead];
}

/**
 * Check that every entry of a `[heads, perHead]` int32 array lies in `[min, max]`, naming the first offender.
 * @throws ShapeError
 */
export function expectRange(data: ArrayLike<number>, perHead: number, min: number, max: number, field: string, what = 'slot indices'): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v < min || v > max) {
      const [h, j] = at(i, perHead);
      throw new ShapeError(`${field}[${h}, ${j}] = ${v} is out of range; ${what} must be in [${min}, ${max}]`, { field, head: h, index: j, value: v, allowed: [min, max] });
    }
  }
}

/**
 * Check that every element of a `[heads, perHead]` float array is finite and, when `positive`, strictly positive.
 * @throws ShapeError naming the first offender.
 */
export function expectFinite(data: ArrayLike<number>, perHead: number, field: string, positive = false): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (!Number.isFinite(v) || (positive && !(v > 0))) {
      const [h, j] = at(i, perHead);
      throw new ShapeError(`${field}[${h}, ${j}] = ${v} must be ${positive ? 'a finite number > 0' : 'finite'}`, { field, head: h, index: j, value: v });
    }
  }
}

/**
 * Check that every count of a `[heads, length]` array is at least 1 (a slot stands for at least one
 * token), where a kernel divides by counts or takes their logarithm; `why` says which.
 * @throws ShapeError
 */
export function expectPositiveCounts(counts: ArrayLike<number>, length: number, field: string, why: string): void {
  for (let i = 0; i < counts.length; i++) {
    if (counts[i]! < 1) {
      const [h, j] = at(i, length);
      throw new ShapeError(`${field}[${h}, ${j}] = ${counts[i]} must be >= 1 ${why}`, { field, head: h, index: j, value: counts[i] });
    }
  }
}

/**
 * Check that a host tensor is well formed: float32 or int32, non-negative integer dimensions, a typed
 * array of its dtype that fills its shape. `field` names it in errors.
 * @throws ShapeError, DTypeError
 */
export function checkHostTensor(t: unknown, field: string): HostTensor {
  if (typeof t !== 'object' || t === null || !Array.isArray((t as HostTensor).shape)) {
    throw new ShapeError(`${field} is not a host tensor (expected { dtype, shape, data })`, { field });
  }
  const { dtype, shape, data } = t as HostTensor;
  if (dtype !== 'float32' && dtype !== 'int32') throw new DTypeError(field, String(dtype), ['float32', 'int32']);
  const ok = dtype === 'float32' ? data instanceof Float32Array : data instanceof Int32Array;
  if (!ok) throw new DTypeError(field, `${dtype} (backed by ${data === null || data === undefined ? String(data) : (data as object).constructor.name})`, [dtype]);
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new ShapeError(`${field} has invalid dimension ${d} in shape ${fmtShape(shape)}`, { field, shape });
    n *= d;
  }
  if (data.length !== n) throw new ShapeError(`${field} holds ${data.length} elements but its shape ${fmtShape(shape)} needs ${n}`, { field, shape, length: data.length });
  return t as HostTensor;
}

/**
 * Tensor checks bound to one backend's {@link TensorInspector}: what every kernel definition uses to
 * validate its tensor arguments.
 */
export class ArgCheck {
  /**
   * Bind the checks to a backend.
   * @param inspect the backend's answer about a value (see {@link TensorInspector}).
   */
  constructor(readonly inspect: TensorInspector) {}

  /**
   * Check that `value` is a live tensor of this backend; returns its meta.
   * @throws ShapeError naming `field` and why it is not one.
   */
  meta(value: unknown, field: string): TensorMeta {
    const m = this.inspect(value);
    if (typeof m === 'string') throw new ShapeError(`${field} ${m}`, { field });
    return m;
  }

  /**
   * Check that `value` is a live tensor of this backend with `dtype` and `rank`; returns its dimensions
   * (the tensor's own shape array: read it, never write it).
   * @throws ShapeError (not a tensor, disposed, other rank), DTypeError.
   */
  tensor(value: unknown, field: string, dtype: DType, rank: number): readonly number[] {
    const m = this.meta(value, field);
    if (m.dtype !== dtype) throw new DTypeError(field, m.dtype, [dtype]);
    if (m.shape.length !== rank) throw new ShapeError(`${field} must have rank ${rank}, got shape ${fmtShape(m.shape)}`, { field, shape: [...m.shape] });
    return m.shape;
  }

  /**
   * Check that `value` is a live tensor of `dtype` shaped exactly `want`.
   * @throws ShapeError, DTypeError
   */
  shaped(value: unknown, field: string, dtype: DType, want: readonly number[]): void {
    expectShape(this.tensor(value, field, dtype, want.length), want, field);
  }

  /**
   * Check that `value` is a live `[heads, n]` tensor of `dtype`; returns `n` (the columns of an index or a plan field).
   * @throws ShapeError, DTypeError
   */
  columns(value: unknown, field: string, dtype: DType, heads: number): number {
    const n = this.tensor(value, field, dtype, 2)[1]!;
    this.shaped(value, field, dtype, [heads, n]);
    return n;
  }

  /**
   * Check that `value` is an object (a layer or a plan), naming what it should be.
   * @throws ShapeError
   */
  object(value: unknown, field: string, what: string): void {
    if (typeof value !== 'object' || value === null) throw new ShapeError(`${field} must be a ${what} object`, { field });
  }

  /**
   * Check every field of a layer (dtypes, ranks, agreeing dimensions); returns its dimensions.
   * @throws ShapeError or DTypeError naming `<kernel> layer.<field>`.
   */
  layer(layer: unknown, kernel: string): CacheShape {
    this.object(layer, `${kernel}: layer`, 'LayerCache');
    const l = layer as LayerCache<unknown>;
    const [heads, length, headDim] = this.tensor(l.keys, `${kernel} layer.keys`, 'float32', 3) as [number, number, number];
    this.shaped(l.values, `${kernel} layer.values`, 'float32', [heads, length, headDim]);
    this.shaped(l.positions, `${kernel} layer.positions`, 'int32', [heads, length]);
    this.shaped(l.counts, `${kernel} layer.counts`, 'int32', [heads, length]);
    this.shaped(l.scores, `${kernel} layer.scores`, 'float32', [heads, length]);
    return { heads, length, headDim };
  }
}
