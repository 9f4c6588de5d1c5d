import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  ConfigError,
  ErrorCode,
  KVFold,
  assertPlugin,
  createContext,
  disposeLayer,
  hostLayer,
  hostTensor,
  layerFromHost,
  layerToHost,
  type HostLayer,
  type KVFoldError,
} from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { checkPolicy, syntheticLayer } from '@kvfold/testkit';
import tova, { TovaPolicy } from 'kvfold-policy-tova';

const k = createReferenceKernels();

/** Brute force of the rule, straight from the paper's description, on host arrays. */
function expectedKeep(attention: Float32Array, heads: number, length: number, budget: number, scope: 'layer' | 'head'): number[][] {
  if (length <= budget) return Array.from({ length: heads }, () => Array.from({ length }, (_, j) => j));
  const rank = (score: (j: number) => number) => {
    const older = Array.from({ length: length - 1 }, (_, j) => j).sort((a, b) => score(b) - score(a) || a - b);
    return [...older.slice(0, budget - 1).sort((a, b) => a - b), length - 1];
  };
  if (scope === 'head') return Array.from({ length: heads }, (_, h) => rank((j) => attention[h * length + j]!));
  const mean = new Float32Array(length);
  for (let h = 0; h < heads; h++) for (let j = 0; j < length; j++) mean[j]! += attention[h * length + j]! / heads;
  const row = rank((j) => mean[j]!);
  return Array.from({ length: heads }, () => row);
}

function randomLayer(heads: number, length: number, headDim: number, seed: number): HostLayer {
  let s = seed;
  const r = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  return hostLayer({ heads, length, headDim, keys: Array.from({ length: heads * length * headDim }, r), values: Array.from({ length: heads * length * headDim }, r) });
}

async function run(layer: HostLayer, attention: readonly number[] | Float32Array, budget: number, scope: 'layer' | 'head') {
  const [heads, length] = layer.keys.shape as [number, number];
  const cache = layerFromHost(k, layer);
  const last = k.fromHost(hostTensor('float32', [heads, length], attention));
  const out = await new TovaPolicy({ scope }).prefill(cache, { lastAttention: last }, createContext({ kernels: k, budget, promptLength: length }));
  const host = await layerToHost(k, out);
  disposeLayer(k, cache, out);
  const len = host.positions.shape[1]!;
  const positions = Array.from({ length: heads }, (_, h) => Array.from(host.positions.data.subarray(h * len, (h + 1) * len)));
  return { host, positions };
}

describe('tova policy', () => {
  // Dyadic values so float32 sums are exact and the tie below is a real tie.
  const attention = [0.125, 0.5, 0.0625, 0.25, 0.0625, /* head 1 */ 0.375, 0.25, 0.0625, 0.25, 0.0625];
  const layer = randomLayer(2, 5, 2, 1);

  it('keeps the best-attended tokens by the head-averaged last query, plus the newest (hand-computed)', async () => {
    // Means over the two heads: slot0 0.25, slot1 0.375, slot2 0.0625, slot3 0.25, slot4 0.0625.
    // Budget 3 = the newest (slot 4, kept although least attended) + the two best older: slot1, then the
    // 0.25 tie between slots 0 and 3 goes to the lower slot.
    const { host, positions } = await run(layer, attention, 3, 'layer');
    expect(positions).toEqual([[0, 1, 4], [0, 1, 4]]);
    // Kept slots are copied verbatim (keys, values, counts, scores).
    for (const [h, kept] of positions.entries()) {
      kept.forEach((p, i) => {
        expect(Array.from(host.keys.data.subarray((h * 3 + i) * 2, (h * 3 + i + 1) * 2))).toEqual(Array.from(layer.keys.data.subarray((h * 5 + p) * 2, (h * 5 + p + 1) * 2)));
      });
    }
    expect(Array.from(host.counts.data)).toEqual([1, 1, 1, 1, 1, 1]);
  });

  it('decides per kv head with scope "head" (hand-computed)', async () => {
    // Head 0 older slots [0.125, 0.5, 0.0625, 0.25] -> slots 1, 3; head 1 [0.375, 0.25, 0.0625, 0.25] -> 0, then the tie 1 vs 3 -> 1.
    const { positions } = await run(layer, attention, 3, 'head');
    expect(positions).toEqual([[1, 3, 4], [0, 1, 4]]);
  });

  it('keeps only the newest token at a budget of 1 and leaves a cache within budget untouched', async () => {
    expect((await run(layer, attention, 1, 'layer')).positions).toEqual([[4], [4]]);
    const cache = layerFromHost(k, layer);
    const last = k.fromHost(hostTensor('float32', [2, 5], attention));
    const out = await new TovaPolicy().step(cache, { lastAttention: last }, createContext({ kernels: k, budget: 5, promptLength: 5, step: 1 }));
    expect(out).toBe(cache);
  });

  it('matches the brute-force rule on random caches, budgets and attention (both scopes)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 6 }),
        fc.double({ min: 0.01, max: 1, noNaN: true }),
        fc.integer({ min: 0, max: 1e6 }),
        fc.constantFrom('layer' as const, 'head' as const),
        async (heads, length, headDim, ratio, seed, scope) => {
          const budget = Math.max(1, Math.round(ratio * length));
          // Attention drawn from few distinct levels so ties happen often.
          const att = Float32Array.from({ length: heads * length }, (_, i) => ((seed + i * 7919) % 5) / 8);
          const { positions } = await run(randomLayer(heads, length, headDim, seed), att, budget, scope);
          expect(positions).toEqual(expectedKeep(att, heads, length, budget, scope));
        },
      ),
      { numRuns: 150, seed: 42 },
    );
  });

  it('follows the brute-force rule through prefill and decode steps with observed attention', async () => {
    const data = syntheticLayer({ heads: 2, queryHeads: 4, length: 24, headDim: 8, seed: 5 });
    const budget = 8;
    const policy = new TovaPolicy();
    let cache = layerFromHost(k, data.layer);
    const first = k.observe(cache, k.fromHost(data.queries), k.fromHost(data.queryPositions));
    const lastHost = (await k.toHost(first.lastAttention)).data as Float32Array;
    let out = await policy.prefill(cache, first, createContext({ kernels: k, budget, promptLength: 24 }));
    expect((await layerToHost(k, out)).positions.data.subarray(0, budget)).toEqual(Int32Array.from(expectedKeep(lastHost, 2, 24, budget, 'layer')[0]!));
    disposeLayer(k, cache, out);
    cache = out;
    for (let step = 1; step <= 5; step++) {
      const pos = 23 + step;
      const grown = k.append(cache, k.fromHost(hostTensor('float32', [2, 1, 8], data.layer.keys.data.subarray(0, 16))), k.fromHost(hostTensor('float32', [2, 1, 8], data.layer.values.data.subarray(0, 16))), k.fromHost(hostTensor('int32', [2, 1], [pos, pos])));
      const before = await layerToHost(k, grown);
      const q = k.fromHost(hostTensor('float32', [4, 1, 8], data.queries.data.subarray(0, 32)));
      const seen = k.observe(grown, q, k.fromHost(hostTensor('int32', [1], [pos])));
      const att = (await k.toHost(seen.lastAttention)).data as Float32Array;
      out = await policy.step(grown, { lastAttention: seen.lastAttention }, createContext({ kernels: k, budget, promptLength: 24, step }));
      const want = expectedKeep(att, 2, budget + 1, budget, 'layer')[0]!.map((j) => before.positions.data[j]!);
      expect(Array.from((await layerToHost(k, out)).positions.data.subarray(0, budget))).toEqual(want);
      disposeLayer(k, grown, out);
      cache = out;
    }
  });

  it('refuses layer-wide decisions on a cache whose heads hold different tokens', async () => {
    const misaligned = hostLayer({ heads: 2, length: 3, headDim: 1, keys: [1, 2, 3, 4, 5, 6], values: [1, 2, 3, 4, 5, 6], positions: [0, 1, 2, 0, 2, 3] });
    const err = await run(misaligned, [0.1, 0.2, 0.3, 0.1, 0.2, 0.3], 2, 'layer').catch((e: unknown) => e as KVFoldError);
    expect((err as KVFoldError).code).toBe(ErrorCode.Shape);
    expect((err as Error).message).toMatch(/head 1 slot 1 holds position 2 and head 0 holds 1; use scope "head"/);
    expect((await run(misaligned, [0.1, 0.2, 0.3, 0.1, 0.2, 0.3], 2, 'head')).positions).toEqual([[1, 2], [2, 3]]);
  });

  it('names the missing observation and validates its options through kvfold', async () => {
    const kv = KVFold.create({ plugins: [tova] });
    const cache = layerFromHost(k, layer);
    const err = (await kv.policy('tova').prefill(cache, {}, createContext({ kernels: k, budget: 2, promptLength: 5 })).then(
      () => new Error('expected an error'),
      (e: unknown) => e,
    )) as KVFoldError;
    expect(err.code).toBe(ErrorCode.MissingObservation);
    expect(err.message).toMatch(/policy "tova" needs observed.lastAttention/);
    expect(() => kv.policy('tova', { scope: 'token' })).toThrow(ConfigError);
    expect(() => kv.validate({ policy: { name: 'tova', budget: 0.5, options: { scope: 'token' } } })).toThrow(/\/policy\/options\/scope: must be one of "layer", "head"/);
    expect(kv.validate({ policy: { name: 'tova', budget: 0.5 } }).policy.name).toBe('tova');
  });

  it('passes the shared policy invariant matrix (both scopes)', async () => {
    const kv = KVFold.create({ plugins: [tova] });
    expect(await checkPolicy(() => kv.policy('tova'), { prefillLength: 'budget', keepsRecent: 1 })).toEqual([]);
    expect(await checkPolicy(() => kv.policy('tova', { scope: 'head' }), { prefillLength: 'budget', keepsRecent: 1 })).toEqual([]);
  });
});

describe('kvfold-policy-tova as a published package', () => {
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as Record<string, Record<string, string> | undefined>;

  it('default-exports a kvfold plugin contributing only tova', () => {
    const plugin = assertPlugin(tova, 'kvfold-policy-tova');
    expect(plugin.name).toBe('kvfold-policy-tova');
    expect(plugin.policies.map((p) => p.name)).toEqual(['tova']);
    expect(plugin.backends).toEqual([]);
  });
  it('depends on @kvfold/core only, as a peer dependency', () => {
    expect(manifest.dependencies ?? {}).toEqual({});
    expect(manifest.peerDependencies).toEqual({ '@kvfold/core': expect.stringMatching(/^\^\d+\.\d+\.\d+$/) });
    // Other kvfold packages are for its tests only.
    expect(Object.keys(manifest.devDependencies ?? {}).filter((d) => d.startsWith('@kvfold/')).sort()).toEqual(['@kvfold/backend-reference', '@kvfold/core', '@kvfold/testkit']);
  });
});
