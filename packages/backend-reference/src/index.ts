/**
 * @packageDocumentation
 * kvfold reference backend: core's reference implementation of every kernel, on host tensors
 * (`Float32Array` / `Int32Array`). It is the ground truth for the parity tests of every other backend and a
 * usable CPU backend in its own right. The kernels themselves are declared in `@kvfold/core` (one file
 * each, with their validation); this package makes them a backend.
 */
import { definePlugin } from '@kvfold/core';
import { referenceBackend } from './reference.js';

export { MAX_REFERENCE_THREADS, WASM_KERNELS, defaultReferenceThreads, createReferenceKernels, referenceBackend, referenceKernelBackend, type ReferenceBackendOptions, type ReferenceKernels } from './reference.js';
export { THREAD_MIN_BYTES } from '@kvfold/wasm-kernels';
export { WasmHeap, WasmPool } from './wasm-heap.js';
export type { WasmKernelExports } from '@kvfold/wasm-kernels';

/** The plugin: contributes the `reference` backend. */
export default definePlugin({ name: '@kvfold/backend-reference', backends: [referenceBackend] });
