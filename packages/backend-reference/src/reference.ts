import { defineBackend, DTypeError, type BackendDefinition, type HostTensor, type KVKernels } from '@kvfold/core';
import { accumulate } from './kernels/accumulate.js';
import { adjacentCosine } from './kernels/adjacentCosine.js';
import { allFinite } from './kernels/allFinite.js';
import { append } from './kernels/append.js';
import { gather } from './kernels/gather.js';
import { mergeIntoNeighbours } from './kernels/mergeIntoNeighbours.js';
import { mergeSegments } from './kernels/mergeSegments.js';
import { observe } from './kernels/observe.js';
import { topK } from './kernels/topK.js';
import { tensorData } from './validate.js';

/** Validate a host tensor of either dtype and copy it (shape and data), so no two owners share memory. */
function copyTensor(t: HostTensor, field: string): HostTensor {
  if (typeof t === 'object' && t !== null && t.dtype !== 'float32' && t.dtype !== 'int32') {
    throw new DTypeError(field, String(t.dtype), ['float32', 'int32']);
  }
  const rank = typeof t === 'object' && t !== null && Array.isArray(t.shape) ? t.shape.length : 0;
  const data = tensorData(t, field, t.dtype, rank);
  return { dtype: t.dtype, shape: [...t.shape], data: data.slice() } as HostTensor;
}

/**
 * Create the reference kernels: every kernel of {@link KVKernels} in plain TypeScript over
 * `Float32Array` / `Int32Array`, with float64 accumulation. Its tensor type is core's {@link HostTensor},
 * and its results are the ground truth the other backends are tested against (1e-5 relative).
 */
export function createReferenceKernels(): KVKernels<HostTensor> {
  return {
    backend: 'reference',
    describe: () => 'reference (plain TypeScript, Float32Array)',
    fromHost: (tensor) => copyTensor(tensor, 'fromHost tensor'),
    // A copy, so a caller editing the result can never change a tensor the backend (or a policy) still holds.
    toHost: async (tensor) => copyTensor(tensor, 'toHost tensor'),
    shapeOf: (tensor) => tensor.shape,
    dtypeOf: (tensor) => tensor.dtype,
    // Tensors are ordinary typed arrays owned by the garbage collector; there is nothing to release,
    // and forgetting to dispose leaks nothing. The method exists only to honour the shared contract.
    dispose: () => undefined,
    allFinite: async (tensor, bound) => allFinite(tensor, bound),
    append,
    accumulate,
    topK,
    gather,
    adjacentCosine,
    mergeSegments,
    mergeIntoNeighbours,
    observe,
  };
}

/** The reference backend's registration: no options; `create` returns {@link createReferenceKernels}. */
export const referenceBackend: BackendDefinition<Record<string, never>> = defineBackend<Record<string, never>>({
  name: 'reference',
  description: 'Plain TypeScript kernels over Float32Array (float64 accumulation); the ground truth for every other backend.',
  schema: { type: 'object', additionalProperties: false, properties: {} },
  create: async () => createReferenceKernels(),
});
