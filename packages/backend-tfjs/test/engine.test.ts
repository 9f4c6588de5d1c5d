// The `tensorflow` engine path without libtensorflow: a stand-in backend registered under the name
// "tensorflow" (tfjs-cpu's kernels re-registered for it), as @tensorflow/tfjs-node would register its own.
// It proves that `auto` prefers an installed tensorflow engine, that describe() says so, and that the
// kernels' code paths for engines other than wasm and cpu compute the reference results. This file
// runs in its own worker, so the stand-in never reaches the other test files.
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { createTfjsKernels } from '../src/index.js';
import { checkAllKernels } from './helpers.js';

function registerStandIn(): void {
  tf.registerBackend('tensorflow', () => new MathBackendCPU(), 0);
  for (const config of tf.getKernelsForBackend('cpu')) tf.registerKernel({ ...config, backendName: 'tensorflow' });
}

describe('tfjs tensorflow engine (stand-in)', () => {
  it('is what auto picks once a "tensorflow" backend is registered, and describe() says so', async () => {
    registerStandIn();
    const k = await createTfjsKernels();
    expect(k.engine).toBe('tensorflow');
    expect(k.simd).toBeUndefined();
    expect(k.describe()).toBe(`tfjs ${tf.version_core} on tensorflow (libtensorflow; a "tensorflow" tfjs backend was already registered)`);
    const named = await createTfjsKernels({ engine: 'tensorflow' });
    expect(named.engine).toBe('tensorflow');
    // wasm can still be named explicitly next to it.
    expect((await createTfjsKernels({ engine: 'wasm' })).engine).toBe('wasm');
  });

  it('runs every kernel with the reference results on it', async () => {
    const k = await createTfjsKernels({ engine: 'tensorflow' });
    for (const [H, L, D] of [
      [1, 1, 16],
      [3, 37, 16],
      [8, 200, 64],
      [2, 700, 32],
    ] as const) {
      await checkAllKernels(k, H, L, D);
    }
    expect(tf.getBackend()).toBe('tensorflow');
  });
});
