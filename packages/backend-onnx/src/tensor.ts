import type { HostTensor, TensorMeta } from '@kvfold/core';
import type { Tensor } from 'onnxruntime-common';
import { ort } from './ort.js';

/**
 * The onnx backend's tensor type and what core needs to know about it. Core validates every kernel call
 * (shapes, dtypes, options and contents, with the same messages on every backend); ORT tensors live in CPU
 * memory here, so core reads their contents as views, without a copy.
 * @module
 */

/** The tensor type of this backend: onnxruntime's CPU tensor. */
export type OnnxTensor = Tensor;

/** A live CPU ort.Tensor's shape and dtype, or why `value` is not one. */
export function inspectTensor(value: unknown): TensorMeta | string {
  if (!(value instanceof ort.Tensor)) return 'is not an onnx-backend tensor (ort.Tensor); upload host data with kernels.fromHost()';
  if (value.location === 'none') return 'was disposed and can no longer be used';
  if (value.location !== 'cpu') return `lives on ${value.location}; this backend exchanges CPU tensors`;
  if (value.type !== 'float32' && value.type !== 'int32') return `has dtype ${value.type}; kvfold kernels exchange float32 and int32 tensors`;
  return { shape: value.dims, dtype: value.type };
}

/** A CPU tensor's contents as a host tensor: a view of its own buffer, no copy (read it, do not keep it past a dispose). */
export function hostView(t: OnnxTensor): HostTensor {
  return { dtype: t.type, shape: t.dims, data: t.data } as HostTensor;
}

/** An int64 `[1]` tensor (TopK's K and Slice bounds must be 1-D int64 in ORT). */
export function int64Scalar(v: number): OnnxTensor {
  return new ort.Tensor('int64', BigInt64Array.of(BigInt(v)), [1]);
}

/** A float32 `[1]` tensor. */
export function float32Scalar(v: number): OnnxTensor {
  return new ort.Tensor('float32', Float32Array.of(v), [1]);
}
