import type { AnyKernelDefinition } from '../kernel-definition.js';
import { accumulateKernel } from './accumulate.js';
import { adjacentCosineKernel } from './adjacentCosine.js';
import { allFiniteKernel } from './allFinite.js';
import { appendKernel } from './append.js';
import { gatherKernel } from './gather.js';
import { keyNormsKernel } from './keyNorms.js';
import { mergeIntoNeighboursKernel } from './mergeIntoNeighbours.js';
import { linkSegmentsKernel } from './linkSegments.js';
import { mergeSegmentsKernel } from './mergeSegments.js';
import { mergeSimilarKernel } from './mergeSimilar.js';
import { observeKernel } from './observe.js';
import { topKKernel } from './topK.js';

export { accumulateKernel, type AccumulateCall } from './accumulate.js';
export { ADJACENT_COSINE_LANE_RANGE, adjacentCosineKernel, type AdjacentCosineCall } from './adjacentCosine.js';
export { allFiniteKernel, type AllFiniteCall } from './allFinite.js';
export { appendKernel, type AppendCall } from './append.js';
export { gatherKernel, type GatherCall } from './gather.js';
export { keyNormsKernel, type KeyNormsCall } from './keyNorms.js';
export { mergeIntoNeighboursKernel, type MergeIntoNeighboursCall } from './mergeIntoNeighbours.js';
export { linkSegmentsKernel, segmentHead, type LinkSegmentsCall } from './linkSegments.js';
export { mergeSegmentsKernel, type MergeSegmentsCall } from './mergeSegments.js';
export { mergeSimilarKernel, type MergeSimilarCall } from './mergeSimilar.js';
export { observeKernel, type ObserveCall } from './observe.js';
export { topKKernel, checkWindow, selectBest, selectTopFloat32, type TopKCall } from './topK.js';
export { freshAllocator, type HostAllocator, type KeysCall, type LayerCall } from './host.js';

/**
 * The kernels of {@link KVKernels}, each declared once with its validation and reference implementation.
 * Every `KVFold` instance starts its kernel registry from this list; plugins add their own kernels.
 */
export const BUILTIN_KERNELS: readonly AnyKernelDefinition[] = [
  allFiniteKernel,
  appendKernel,
  accumulateKernel,
  topKKernel,
  gatherKernel,
  adjacentCosineKernel,
  keyNormsKernel,
  linkSegmentsKernel,
  mergeSegmentsKernel,
  mergeSimilarKernel,
  mergeIntoNeighboursKernel,
  observeKernel,
];

/** Names of the built-in kernels: the kernel methods of {@link KVKernels}. */
export type BuiltinKernel = 'allFinite' | 'append' | 'accumulate' | 'topK' | 'gather' | 'adjacentCosine' | 'keyNorms' | 'linkSegments' | 'mergeSegments' | 'mergeSimilar' | 'mergeIntoNeighbours' | 'observe';
