import { DTypeError, ShapeError } from './errors.js';

/** Element types kvfold kernels exchange. Indices, positions and counts are int32 (no backend here has int64 everywhere). */
export type DType = 'float32' | 'int32';

/** Typed array for a {@link DType}. */
export type TypedArrayFor<D extends DType> = D extends 'float32' ? Float32Array : Int32Array;

/**
 * A dense row-major tensor in host memory. It is the exchange format between backends and the
 * tensor type of the reference backend itself.
 */
export interface HostTensor<D extends DType = DType> {
  /** Element type. */
  readonly dtype: D;
  /** Dimensions, outermost first. */
  readonly shape: readonly number[];
  /** Elements in row-major order; `data.length` equals the product of `shape`. */
  readonly data: TypedArrayFor<D>;
}

/** Number of elements of a shape. */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Build a host tensor, checking that the data fits the shape.
 * @throws ShapeError when `data.length` differs from the product of `shape` or a dimension is not a non-negative integer.
 */
export function hostTensor<D extends DType>(dtype: D, shape: readonly number[], data?: TypedArrayFor<D> | ArrayLike<number>): HostTensor<D> {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new ShapeError(`invalid dimension ${d} in shape [${shape.join(', ')}]`, { shape });
  }
  const n = sizeOf(shape);
  let arr: TypedArrayFor<D>;
  if (data === undefined) {
    arr = (dtype === 'float32' ? new Float32Array(n) : new Int32Array(n)) as TypedArrayFor<D>;
  } else if ((dtype === 'float32' && data instanceof Float32Array) || (dtype === 'int32' && data instanceof Int32Array)) {
    arr = data as TypedArrayFor<D>;
  } else {
    if (data instanceof Float32Array || data instanceof Int32Array) {
      throw new DTypeError('data', data instanceof Float32Array ? 'float32' : 'int32', [dtype]);
    }
    arr = (dtype === 'float32' ? Float32Array.from(data) : Int32Array.from(data)) as TypedArrayFor<D>;
  }
  if (arr.length !== n) {
    throw new ShapeError(`data has ${arr.length} elements but shape [${shape.join(', ')}] needs ${n}`, { shape, length: arr.length });
  }
  return { dtype, shape: [...shape], data: arr };
}
