import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { bindKernels, defineKernelBackend, hostTensor, type DType, type HostTensor, type KernelImplementations, type KVKernels } from '@kvfold/core';

/** Engines the tests can run on here (tensorflow needs tfjs-node, which is not installed). */
export type TestEngine = 'cpu' | 'wasm';

/** Activate a tfjs engine for the current test file; returns false when it cannot start. */
export async function useEngine(engine: TestEngine): Promise<boolean> {
  try {
    const ok = await tf.setBackend(engine);
    await tf.ready();
    return ok && tf.getBackend() === engine;
  } catch {
    return false;
  }
}

/**
 * tfjs tensors as a kvfold backend with only the given kernel implementations: core validates every call
 * and runs each kernel left out as the reference on host copies (`dataSync`), so a test gets ground-truth
 * kernel semantics on tfjs tensors without the tfjs backend package.
 */
function tfTensors(name: string, kernels: KernelImplementations<tf.Tensor>): KVKernels<tf.Tensor> {
  return bindKernels(
    defineKernelBackend<tf.Tensor>({
      name,
      describe: () => `${name} kernels on tfjs ${tf.getBackend()}`,
      inspect: (v) => (!(v instanceof tf.Tensor) ? 'is not a tf.Tensor' : v.isDisposed ? 'was disposed and can no longer be used' : { shape: v.shape, dtype: v.dtype as DType }),
      fromHost: (t: HostTensor) => tf.tensor(t.data.slice(), [...t.shape], t.dtype),
      toHost: async (t) => hostTensor(t.dtype as DType, t.shape, (await t.data()).slice() as Float32Array | Int32Array),
      read: (t) => hostTensor(t.dtype as DType, t.shape, t.dataSync() as Float32Array | Int32Array),
      dispose: (ts) => {
        for (const t of ts) if (!t.isDisposed) t.dispose();
      },
      kernels,
    }),
  );
}

/**
 * The few kernels the runtime itself calls on every token (append and accumulate), written directly on
 * tfjs ops; the rest run the reference through the host. The runtime's tests use them so decoder and
 * cache-manager checks do not depend on the full tfjs backend package; policy integration tests use
 * `createTfjsKernels` from @kvfold/backend-tfjs.
 */
export function minimalKernels(): KVKernels<tf.Tensor> {
  return tfTensors('test-tfjs', {
    append: {
      run: ({ layer, keys, values, positions, dims, n }) =>
        tf.tidy(() => ({
          keys: tf.concat([layer.keys, keys], 1),
          values: tf.concat([layer.values, values], 1),
          positions: tf.concat([layer.positions, positions], 1),
          counts: tf.concat([layer.counts, tf.ones([dims.heads, n], 'int32')], 1),
          scores: tf.concat([layer.scores, tf.zeros([dims.heads, n], 'float32')], 1),
        })),
    },
    accumulate: { run: ({ scores, attention }) => tf.add(scores, attention) },
  });
}

/** Largest absolute difference of two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/**
 * Every kernel as the reference, run on host copies of tfjs tensors: what core does for kernels a backend
 * lacks. Lets policy integration tests run the runtime on tfjs tensors with ground-truth kernel semantics,
 * independently of the tfjs backend package.
 */
export function bridgeKernels(): KVKernels<tf.Tensor> {
  return tfTensors('test-bridge', {});
}
