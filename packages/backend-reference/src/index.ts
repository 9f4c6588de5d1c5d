/**
 * @packageDocumentation
 * kvfold reference backend: every kernel of `KVKernels<HostTensor>` in plain TypeScript on
 * Float32Array/Int32Array. It is the ground truth for the parity tests of every other backend and a
 * usable CPU backend in its own right.
 */
import { definePlugin } from '@kvfold/core';
import { referenceBackend } from './reference.js';

export { createReferenceKernels, referenceBackend } from './reference.js';
export { accumulate } from './kernels/accumulate.js';
export { adjacentCosine } from './kernels/adjacentCosine.js';
export { allFinite } from './kernels/allFinite.js';
export { append } from './kernels/append.js';
export { gather } from './kernels/gather.js';
export { mergeIntoNeighbours } from './kernels/mergeIntoNeighbours.js';
export { mergeSegments } from './kernels/mergeSegments.js';
export { observe } from './kernels/observe.js';
export { topK } from './kernels/topK.js';

/** The plugin: contributes the `reference` backend. */
export default definePlugin({ name: '@kvfold/backend-reference', backends: [referenceBackend] });
