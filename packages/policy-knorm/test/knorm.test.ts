// Knorm on hand-computed cases: each head keeps the slots whose keys have the lowest L2 norm.
import { describe, expect, it } from 'vitest';
import { KVFold, createContext, hostLayer, type HostTensor, type KVKernels } from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { leaked, positionsOf, trackedKernels, upload } from '@kvfold/testkit';
import plugin, { KnormPolicy } from '@kvfold/policy-knorm';

const ctx = <T>(k: KVKernels<T>, budget: number, step = 0) => createContext({ kernels: k, budget, promptLength: 5, step });

describe('knorm', () => {
  it('keeps the lowest key norms per head (norms 5, 1, 3, 2, 4 and 1, 5, 4, 3, 2)', async () => {
    const k = trackedKernels();
    // head dim 2: (3, 4) has norm 5, (0, 1) norm 1, ...
    const keys = [3, 4, 0, 1, 0, 3, 2, 0, 0, 4, /* head 1 */ 1, 0, 0, 5, 4, 0, 0, 3, 2, 0];
    const layer = upload(k, hostLayer({ heads: 2, length: 5, headDim: 2, keys, values: new Array(20).fill(0) }));
    const out = await new KnormPolicy().prefill(layer, {}, ctx(k, 2));
    expect(await positionsOf(k, out)).toEqual([
      [1, 3],
      [0, 4],
    ]);
    expect(leaked(k, [layer, out])).toBe(0);
  });
  it('needs nothing observed, keeps decode tokens by default, and registers through its plugin', async () => {
    const k = createReferenceKernels() as KVKernels<HostTensor>;
    const layer = upload(k, hostLayer({ heads: 1, length: 5, headDim: 1, keys: [5, 1, 3, 2, 4], values: [0, 0, 0, 0, 0] }));
    const p = new KnormPolicy();
    expect(p.needs).toEqual([]);
    expect(await p.step(layer, {}, ctx(k, 2, 1))).toBe(layer);
    expect(await positionsOf(k, await new KnormPolicy({ decode: 'evict' }).step(layer, {}, ctx(k, 2, 1)))).toEqual([[1, 4]]); // the newest stays
    const kv = KVFold.create({ plugins: [plugin] });
    expect(kv.policies.names()).toEqual(['knorm']);
    expect(() => kv.policy('knorm', { decode: 'sometimes' })).toThrow(/\/decode/);
  });
});
