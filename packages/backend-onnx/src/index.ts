/**
 * @packageDocumentation
 * kvfold's ONNX Runtime backend: every KVKernels kernel is a small ONNX model run by onnxruntime-node;
 * the fused kernels are `ai.kvfold` custom ops that carry ONNX function bodies (so stock ORT runs them on
 * any execution provider) and have native CPU and CUDA kernels in the project's optional native build.
 */
import { definePlugin } from '@kvfold/core';
import { onnxBackend } from './backend.js';

export { createOnnxKernels, cudaUnavailableReason, onnxBackend, onnxBackendFor, onnxOptionsSchema, defaultNativeDir, type OnnxBackendOptions, type ProviderProblem } from './backend.js';
export { onnxKernelBackend, type KernelPath, type OnnxExtensions, type OnnxKernels, type OnnxRuntimeInfo } from './onnxKernels.js';
export type { AccumulatedSelection } from './kernels/accumulateTopK.js';
export type { OnnxTensor } from './tensor.js';
export { KVFOLD_DOMAIN, OPSET } from './graph.js';
export {
  ortPackageVersion,
  ORT_INSTALL_HINT,
  ortApiOf,
  missingCudaProviderFiles,
  nativeIncompatibility,
  readManifest,
  type NativeManifest,
  type KernelSession,
  type SessionConfig,
  type SessionFactory,
} from './session.js';

/** The plugin: contributes the `onnx` backend. */
export default definePlugin({ name: '@kvfold/backend-onnx', backends: [onnxBackend] });
