// SnapKV and PyramidKV on hand-computed cases: the pooled attention of the observation window ranks the
// prefix; the window itself is kept; PyramidKV gives each layer its scheduled budget.
import { describe, expect, it } from 'vitest';
import { ErrorCode, KVFold, createContext, hostLayer, hostTensor, type HostTensor, type KVKernels } from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { leaked, positionsOf, trackedKernels, upload } from '@kvfold/testkit';
import plugin, { SnapKVPolicy, createPyramidKV, pyramidkvPolicy, snapkvPolicy } from '@kvfold/policy-snapkv';

/**
 * One head, head dim 1, six slots whose keys are ln([1, 4, 2, 3, 1, 1]) and two queries equal to 1 at the
 * last two positions (the window): query 4 sees slots 0..4 (total 11), query 5 all six (total 12), so
 * the window's attention on the prefix 0..3 is [1, 4, 2, 3] x (1/11 + 1/12).
 */
function worked<T>(k: KVKernels<T>, queryHeads = 1) {
  const keys = [1, 4, 2, 3, 1, 1].map(Math.log);
  const layer = upload(k, hostLayer({ heads: 1, length: 6, headDim: 1, keys, values: [0, 1, 2, 3, 4, 5] }));
  const queries = k.fromHost(hostTensor('float32', [queryHeads, 2, 1], new Array(queryHeads * 2).fill(1)));
  return { layer, observed: { queries } };
}
const ctx = <T>(k: KVKernels<T>, budget: number, extra: Partial<Parameters<typeof createContext<T>>[0]> = {}) => createContext({ kernels: k, budget, promptLength: 6, newTokens: 2, ...extra });

describe('snapkv', () => {
  it('without pooling keeps the window and the prefix slots the window attends to most', async () => {
    const k = trackedKernels();
    const { layer, observed } = worked(k);
    const out = await new SnapKVPolicy({ window: 2, kernelSize: 1 }).prefill(layer, observed, ctx(k, 4));
    expect(await positionsOf(k, out)).toEqual([[1, 3, 4, 5]]); // prefix scores 1, 4, 2, 3: slots 1 and 3
    expect(leaked(k, [layer, out, observed.queries])).toBe(0);
  });
  it('with pooling ranks each slot by the mean of its neighbourhood (zero-padded): [5, 7, 9, 5] / 3 keeps slots 1 and 2', async () => {
    const k = createReferenceKernels();
    const { layer, observed } = worked(k);
    const out = await new SnapKVPolicy({ window: 2, kernelSize: 3 }).prefill(layer, observed, ctx(k, 4));
    expect(await positionsOf(k, out)).toEqual([[1, 2, 4, 5]]);
  });
  it('averages the query heads of a GQA group, keeps the cache when the window fills the budget, and needs queries', async () => {
    const k = createReferenceKernels();
    const grouped = worked(k, 2);
    expect(await positionsOf(k, await new SnapKVPolicy({ window: 2, kernelSize: 1 }).prefill(grouped.layer, grouped.observed, ctx(k, 4)))).toEqual([[1, 3, 4, 5]]);
    expect(await positionsOf(k, await new SnapKVPolicy({ window: 3, kernelSize: 1 }).prefill(grouped.layer, grouped.observed, ctx(k, 2)))).toEqual([[4, 5]]);
    await expect(new SnapKVPolicy().prefill(grouped.layer, {}, ctx(k, 3))).rejects.toMatchObject({ code: ErrorCode.MissingObservation });
  });
  it('compresses at prefill only by default; evicts at decode steps when asked', async () => {
    const k = createReferenceKernels();
    const { layer, observed } = worked(k);
    expect(await new SnapKVPolicy().step(layer, observed, ctx(k, 4, { step: 1, newTokens: 1 }))).toBe(layer);
    const q = k.fromHost(hostTensor('float32', [1, 1, 1], [1]));
    // One new token: the window is its query alone (sees all six: [1, 4, 2, 3, 1] / 12 on slots 0..4).
    const out = await new SnapKVPolicy({ kernelSize: 1, decode: 'evict' }).step(layer, { queries: q }, ctx(k, 3, { step: 1, newTokens: 1 }));
    expect(await positionsOf(k, out)).toEqual([[1, 3, 5]]);
  });
  it('validates options once, through KVFold, naming the field', () => {
    const kv = KVFold.create({ plugins: [plugin] });
    expect(kv.policies.names()).toEqual(['pyramidkv', 'snapkv']);
    expect(() => kv.policy('snapkv', { kernelSize: 4 })).toThrow(/\/kernelSize/);
    expect(new SnapKVPolicy().options).toEqual({ window: 64, kernelSize: 5, decode: 'keep' });
    expect(snapkvPolicy.create({ window: 8, kernelSize: 3, decode: 'keep' }).name).toBe('snapkv');
  });
});

describe('pyramidkv', () => {
  it('runs SnapKV with budgets falling from the bottom layer to the top one (hand-computed schedule)', async () => {
    const k = createReferenceKernels();
    // 3 layers, 6 prompt tokens, budget 3, window 1, beta 3: min 1, max 5 -> layers keep 5, 3, 1
    const policy = createPyramidKV({ window: 1, kernelSize: 1, beta: 3 });
    const lengths: number[] = [];
    for (let l = 0; l < 3; l++) {
      const { layer, observed } = worked(k);
      const out = await policy.prefill(layer, observed, ctx(k, 3, { layerIndex: l, layerCount: 3 }));
      lengths.push((await positionsOf(k, out))[0]!.length);
    }
    expect(lengths).toEqual([5, 3, 1]);
    expect(policy.name).toBe('pyramidkv');
    expect(policy.needs).toEqual(['queries']);
    expect(pyramidkvPolicy.schema).toMatchObject({ properties: { beta: { default: 20 } } });
  });
  it('falls back to the uniform budget when the pyramid does not fit above the window', async () => {
    const k = createReferenceKernels() as KVKernels<HostTensor>;
    const { layer, observed } = worked(k);
    // beta 20 over a 100-token prompt: min = 3 / 20 < window 2, so every layer keeps the uniform 3
    const out = await createPyramidKV({ window: 2, kernelSize: 1 }).prefill(layer, observed, ctx(k, 3, { promptLength: 100, layerIndex: 0, layerCount: 3 }));
    expect((await positionsOf(k, out))[0]).toHaveLength(3);
  });
});
