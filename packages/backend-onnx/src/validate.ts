import { DTypeError, ShapeError, type DType, type LayerCache } from '@kvfold/core';
import type { Tensor } from 'onnxruntime-common';
import { ort } from './ort.js';

/**
 * Argument checks of the ONNX kernels. ORT's own errors name graph-internal values (`Gather_3`), so every
 * kernel checks its inputs here first and throws a typed core error naming the kernel argument.
 * @module
 */

/** The tensor type of this backend: onnxruntime's CPU tensor. */
export type OnnxTensor = Tensor;

/** `[2, 3]` for messages. */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * Check that `t` is a live onnxruntime tensor of `dtype` and `rank`; returns its dimensions.
 * @throws ShapeError when `t` is not an ort.Tensor, was disposed, or has another rank; DTypeError on dtype.
 */
export function dimsOf(t: unknown, field: string, dtype: DType, rank: number): number[] {
  if (!(t instanceof ort.Tensor)) {
    throw new ShapeError(`${field} is not an onnx-backend tensor (ort.Tensor); upload host data with kernels.fromHost()`, { field });
  }
  if (t.location === 'none') throw new ShapeError(`${field} was disposed and can no longer be used`, { field });
  if (t.location !== 'cpu') throw new ShapeError(`${field} lives on ${t.location}; this backend exchanges CPU tensors`, { field, location: t.location });
  if (t.type !== dtype) throw new DTypeError(field, t.type, [dtype]);
  if (t.dims.length !== rank) throw new ShapeError(`${field} must have rank ${rank}, got shape ${fmtShape(t.dims)}`, { field, shape: [...t.dims] });
  return [...t.dims];
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
export function layerDims(layer: LayerCache<OnnxTensor>, kernel: string): LayerDims {
  if (typeof layer !== 'object' || layer === null) throw new ShapeError(`${kernel}: layer must be a LayerCache object`, { field: 'layer' });
  const [heads, length, headDim] = dimsOf(layer.keys, `${kernel} layer.keys`, 'float32', 3) as [number, number, number];
  expectShape(dimsOf(layer.values, `${kernel} layer.values`, 'float32', 3), [heads, length, headDim], `${kernel} layer.values`);
  expectShape(dimsOf(layer.positions, `${kernel} layer.positions`, 'int32', 2), [heads, length], `${kernel} layer.positions`);
  expectShape(dimsOf(layer.counts, `${kernel} layer.counts`, 'int32', 2), [heads, length], `${kernel} layer.counts`);
  expectShape(dimsOf(layer.scores, `${kernel} layer.scores`, 'float32', 2), [heads, length], `${kernel} layer.scores`);
  return { heads, length, headDim };
}

/** The int32 data of a CPU tensor already checked by {@link dimsOf}. */
export function int32Data(t: OnnxTensor): Int32Array {
  return t.data as Int32Array;
}

/** The float32 data of a CPU tensor already checked by {@link dimsOf}. */
export function float32Data(t: OnnxTensor): Float32Array {
  return t.data as Float32Array;
}

/** Throw unless `value` is an integer within `[min, max]`. */
export function expectInt(value: number, field: string, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ShapeError(`${field} = ${value} must be an integer in [${min}, ${max}]`, { field, value, allowed: [min, max] });
  }
}

/**
 * Check that every entry of a `[heads, perHead]` int32 tensor lies in `[min, max]`, naming the first offender.
 * @throws ShapeError
 */
export function expectRange(data: Int32Array, perHead: number, min: number, max: number, field: string, what = 'slot indices'): void {
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

/**
 * Check that every element of a float32 array is finite and, when `positive`, strictly positive.
 * @throws ShapeError naming the first offender.
 */
export function expectFinite(data: Float32Array, perHead: number, field: string, positive = false): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (!Number.isFinite(v) || (positive && !(v > 0))) {
      const h = perHead === 0 ? 0 : Math.floor(i / perHead);
      throw new ShapeError(`${field}[${h}, ${i - h * perHead}] = ${v} must be ${positive ? 'a finite number > 0' : 'finite'}`, {
        field,
        head: h,
        index: i - h * perHead,
        value: v,
      });
    }
  }
}

/** An int64 `[1]` tensor (TopK's K and Slice bounds must be 1-D int64 in ORT). */
export function int64Scalar(v: number): OnnxTensor {
  return new ort.Tensor('int64', BigInt64Array.of(BigInt(v)), [1]);
}

/** A float32 `[1]` tensor. */
export function float32Scalar(v: number): OnnxTensor {
  return new ort.Tensor('float32', Float32Array.of(v), [1]);
}
