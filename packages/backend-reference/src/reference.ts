import {
  bindKernels,
  defineBackend,
  defineKernelBackend,
  fmtShape,
  type BackendDefinition,
  type BindOptions,
  type HostTensor,
  type KernelBackend,
  type KVKernels,
  type TensorMeta,
} from '@kvfold/core';

/** A copy (shape and data), so no two owners ever share memory. */
function copyTensor(t: HostTensor): HostTensor {
  return { dtype: t.dtype, shape: [...t.shape], data: t.data.slice() } as HostTensor;
}

/**
 * What a value is to the reference backend: a well-formed host tensor (float32 or int32 typed array that
 * fills its shape), or why not.
 */
function inspect(value: unknown): TensorMeta | string {
  const t = value as HostTensor;
  if (typeof value !== 'object' || value === null || !Array.isArray(t.shape) || t.data === undefined) {
    return 'is not a reference-backend tensor (expected { dtype, shape, data }); upload host data with kernels.fromHost()';
  }
  if (t.dtype !== 'float32' && t.dtype !== 'int32') return `has dtype ${String(t.dtype)}; the reference backend holds float32 and int32 tensors`;
  const okArray = t.dtype === 'float32' ? t.data instanceof Float32Array : t.data instanceof Int32Array;
  if (!okArray) return `has dtype ${t.dtype} but is backed by ${(t.data as object).constructor.name}`;
  let n = 1;
  for (const d of t.shape) {
    if (!Number.isInteger(d) || d < 0) return `has invalid dimension ${d} in shape ${fmtShape(t.shape)}`;
    n *= d;
  }
  if (t.data.length !== n) return `holds ${t.data.length} elements but its shape ${fmtShape(t.shape)} needs ${n}`;
  return t;
}

/**
 * The reference backend as core binds it: host tensors, and no kernel implementations of its own, so every
 * kernel runs core's reference implementation directly (plain TypeScript over `Float32Array` /
 * `Int32Array`, float64 accumulation).
 */
export function referenceKernelBackend(): KernelBackend<HostTensor> {
  return defineKernelBackend<HostTensor>({
    name: 'reference',
    describe: () => 'reference (plain TypeScript, Float32Array)',
    inspect,
    fromHost: copyTensor,
    // A copy, so a caller editing the result can never change a tensor the backend (or a policy) still holds.
    toHost: async (tensor) => copyTensor(tensor),
    read: (tensor) => tensor,
    // Tensors are ordinary typed arrays owned by the garbage collector; there is nothing to release,
    // and forgetting to dispose leaks nothing. The method exists only to honour the shared contract.
    dispose: () => undefined,
    hostTensors: true,
  });
}

/**
 * Create the reference kernels: every kernel of {@link KVKernels} as core's reference implementation,
 * validated by core. Its tensor type is core's {@link HostTensor}, and its results are the ground truth
 * the other backends are tested against (1e-5 relative). `options.registry` adds a `KVFold` instance's
 * plugin kernels.
 */
export function createReferenceKernels(options: BindOptions = {}): KVKernels<HostTensor> {
  return bindKernels(referenceKernelBackend(), options);
}

/** The reference backend's registration: no options. */
export const referenceBackend: BackendDefinition<Record<string, never>> = defineBackend<Record<string, never>>({
  name: 'reference',
  description: 'Plain TypeScript kernels over Float32Array (float64 accumulation); the ground truth for every other backend.',
  schema: { type: 'object', additionalProperties: false, properties: {} },
  create: async () => referenceKernelBackend() as KernelBackend<unknown>,
});
