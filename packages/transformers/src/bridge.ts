import { Tensor } from '@huggingface/transformers';
import { hostTensor, type HostTensor, type KVKernels } from '@kvfold/core';
import type { OrtTensorLike } from './model.js';

/**
 * Moves float32 tensors between transformers.js's onnxruntime session and a kvfold backend. On the
 * reference backend (tensors are `{dtype, shape, data}`) and the ONNX backend (tensors are onnxruntime
 * tensors) nothing is copied (except, on the reference backend, tensors its wasm kernels wrote into its
 * shared memory, which onnxruntime does not take as inputs): a batch-1 `present` `[1, kvHeads, L, headDim]` already is the
 * `[kvHeads, L, headDim]` layout of a kvfold cache, so the same array is handed over under new
 * dimensions. Other backends (tfjs) go through `fromHost`/`toHost`, which copy.
 */
export interface TensorBridge<T> {
  /** Whether {@link adopt} and {@link feed} share memory instead of copying. */
  readonly zeroCopy: boolean;
  /** A session output as a backend tensor of `shape` (same element count). */
  adopt(t: OrtTensorLike, shape: readonly number[]): T;
  /** A backend float32 tensor as a session input of `shape`. */
  feed(t: T, shape: readonly number[]): Promise<unknown>;
}

/** An onnxruntime float32 / int64 input tensor of the session's own onnxruntime (through transformers.js). */
export function ortTensor(type: 'float32' | 'int64' | 'bool', data: Float32Array | BigInt64Array | Uint8Array, dims: readonly number[]): unknown {
  return new Tensor(type, data, [...dims]).ort_tensor;
}

function referenceBridge(): TensorBridge<HostTensor> {
  return {
    zeroCopy: true,
    adopt: (t, shape) => ({ dtype: 'float32', shape: [...shape], data: t.data as Float32Array }),
    // The reference backend's wasm mode keeps kernel outputs in a shared WebAssembly.Memory, and
    // onnxruntime refuses SharedArrayBuffer-backed inputs: those (compressed caches) are copied.
    feed: async (t, shape) => ortTensor('float32', t.data.buffer instanceof SharedArrayBuffer ? (t.data.slice() as Float32Array) : (t.data as Float32Array), shape),
  };
}

function copyBridge<T>(kernels: KVKernels<T>): TensorBridge<T> {
  return {
    zeroCopy: false,
    adopt: (t, shape) => kernels.fromHost(hostTensor('float32', shape, t.data as Float32Array)),
    feed: async (t, shape) => ortTensor('float32', (await kernels.toHost(t)).data as Float32Array, shape),
  };
}

/**
 * Pick the bridge for `kernels`, given one session output to probe with: the ONNX backend's tensors are
 * adopted as views only when the backend accepts the session's tensor class (the same onnxruntime-common,
 * as when both resolve onnxruntime-node 1.30.0); otherwise it falls back to copies.
 */
export function bridgeFor<T>(kernels: KVKernels<T>, sample: OrtTensorLike): TensorBridge<T> {
  if (kernels.backend === 'reference') return referenceBridge() as unknown as TensorBridge<T>;
  if (kernels.backend === 'onnx' && typeof sample.reshape === 'function') {
    try {
      const view = sample.reshape([...sample.dims]) as unknown as T;
      kernels.shapeOf(view);
      return {
        zeroCopy: true,
        adopt: (t, shape) => t.reshape!(shape) as unknown as T,
        feed: async (t, shape) => (t as unknown as OrtTensorLike).reshape!(shape),
      };
    } catch {
      // Another onnxruntime-common instance: the backend refuses foreign tensors, so copy.
    }
  }
  return copyBridge(kernels);
}
