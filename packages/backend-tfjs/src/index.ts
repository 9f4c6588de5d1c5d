/**
 * @packageDocumentation
 * kvfold TensorFlow.js backend: every kernel of `KVKernels<tf.Tensor>` as a tfjs-core tensor program.
 * Engines: `wasm` (default, SIMD), `cpu` (fallback), and `tensorflow` when the user installed
 * @tensorflow/tfjs-node or @tensorflow/tfjs-node-gpu. tfjs's current engine is process-global; see
 * {@link createTfjsKernels} for how kernels of two engines share a process.
 */
import { definePlugin } from '@kvfold/core';
import { tfjsBackend } from './tfjs.js';

export { TFJS_WASM_KERNELS, createTfjsKernels, tfjsBackend, tfjsKernelBackend, tfjsOptionsSchema, type CreateTfjsKernelsOptions, type TfjsBackendOptions, type TfjsKernelMode, type TfjsKernels } from './tfjs.js';
export { ENGINE_CHOICES, TENSORFLOW_INSTALL, TENSORFLOW_PACKAGES, type TfjsEngine, type TfjsEngineChoice } from './engine.js';
export { OBSERVE_BLOCK } from './kernels/observe.js';

/** The plugin: contributes the `tfjs` backend. */
export default definePlugin({ name: '@kvfold/backend-tfjs', backends: [tfjsBackend] });
