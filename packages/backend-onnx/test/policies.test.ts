import { describe, it, expect } from 'vitest';
import { createContext, disposeLayer, hostTensor, layerFromHost, type HostLayer, type HostTensor, type KVCachePolicy, type KVKernels, type LayerCache } from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { H2OPolicy } from '@kvfold/policy-h2o';
import { CaMPolicy } from '@kvfold/policy-cam';
import { KVMergerPolicy } from '@kvfold/policy-kvmerger';
import { expectLayerClose, layerHost, randomF32, randomLayer, rng, variants } from './helpers.js';

/** A prompt and the decode tokens that follow it, identical for every backend. */
interface Script {
  readonly prompt: HostLayer;
  readonly promptQueries: HostTensor;
  readonly steps: { keys: HostTensor; values: HostTensor; query: HostTensor }[];
}

function script(H: number, G: number, L: number, D: number, steps: number, seed: number): Script {
  const r = rng(seed);
  const prompt = randomLayer(H, L, D, r);
  // Positions 0..L-1 on every head (a fresh prompt), counts 1 and scores 0.
  const fresh = { ...prompt, positions: hostTensor('int32', [H, L], Int32Array.from({ length: H * L }, (_, i) => i % L)) };
  const layer: HostLayer = {
    ...fresh,
    counts: hostTensor('int32', [H, L], new Int32Array(H * L).fill(1)),
    scores: hostTensor('float32', [H, L], new Float32Array(H * L)),
  } as HostLayer;
  return {
    prompt: layer,
    promptQueries: randomF32([H * G, L, D], r),
    steps: Array.from({ length: steps }, () => ({ keys: randomF32([H, 1, D], r), values: randomF32([H, 1, D], r), query: randomF32([H * G, 1, D], r) })),
  };
}

/**
 * Run a policy through prefill and decode steps on one backend, observing attention with that backend's
 * own `observe`; returns the cache after every call.
 */
async function play<T>(k: KVKernels<T>, policy: KVCachePolicy, s: Script, budget: number): Promise<HostLayer[]> {
  const L = s.prompt.keys.shape[1]!;
  const H = s.prompt.keys.shape[0]!;
  let layer: LayerCache<T> = layerFromHost(k, s.prompt);
  const qpos = k.fromHost(hostTensor('int32', [L], Int32Array.from({ length: L }, (_, i) => i)));
  const q = k.fromHost(s.promptQueries);
  let obs = k.observe(layer, q, qpos);
  let next = await policy.prefill(layer, { ...obs, queries: q }, createContext({ kernels: k, budget, promptLength: L, seed: 11 }));
  k.dispose(obs.attention, obs.lastAttention, q, qpos);
  disposeLayer(k, layer, next);
  layer = next;
  const out = [await layerHost(k, layer)];
  for (const [i, st] of s.steps.entries()) {
    const pos = L + i;
    const grown = k.append(layer, k.fromHost(st.keys), k.fromHost(st.values), k.fromHost(hostTensor('int32', [H, 1], new Int32Array(H).fill(pos))));
    disposeLayer(k, layer, grown);
    const sq = k.fromHost(st.query);
    const sp = k.fromHost(hostTensor('int32', [1], [pos]));
    obs = k.observe(grown, sq, sp);
    const ctx = createContext({ kernels: k, budget, promptLength: L, step: i + 1, newTokens: 1, seed: 11 });
    next = await policy.step(grown, { ...obs, queries: sq }, ctx);
    k.dispose(obs.attention, obs.lastAttention, sq, sp);
    disposeLayer(k, grown, next);
    layer = next;
    out.push(await layerHost(k, layer));
  }
  return out;
}

const ref = createReferenceKernels();
/** What each policy must visibly have done to the prefill cache, so parity is not vacuous. */
type Effect = (prefill: HostLayer, s: Script) => void;
const evicted: Effect = (c) => expect(c.keys.shape[1]).toBe(12);
const merged: Effect = (c) => expect(Array.from(c.counts.data).some((n) => n > 1)).toBe(true);
const valuesMoved: Effect = (c, s) => {
  // CaM keeps keys verbatim but adds evicted values to kept ones: some kept value differs from its original.
  const [H, K, D] = c.values.shape as [number, number, number];
  const L = s.prompt.keys.shape[1]!;
  let moved = false;
  for (let h = 0; h < H; h++) {
    for (let j = 0; j < K; j++) {
      const p = c.positions.data[h * K + j]!;
      for (let d = 0; d < D; d++) if (c.values.data[(h * K + j) * D + d] !== s.prompt.values.data[(h * L + p) * D + d]) moved = true;
    }
  }
  expect(moved).toBe(true);
};
const cases: { name: string; make: () => KVCachePolicy; effect: Effect[] }[] = [
  { name: 'H2O', make: () => new H2OPolicy({ recent: 0.5 }), effect: [evicted] },
  { name: 'CaM (Bernoulli gates)', make: () => new CaMPolicy({ mergeBudget: 4 }), effect: [evicted, valuesMoved] },
  { name: 'KVMerger (exact budget)', make: () => new KVMergerPolicy({ recent: 2, heavy: 2 }), effect: [evicted, merged] },
  { name: 'KVMerger (paper mode, shared sets)', make: () => new KVMergerPolicy({ mode: 'paper', eps: 0.1, sets: 'shared', decodeInterval: 2 }), effect: [merged] },
];

for (const variant of variants()) {
  describe(`end-to-end policy parity with reference: ${variant.name}`, () => {
    for (const c of cases) {
      it(`${c.name}: prefill and 6 decode steps give the reference's caches (several shapes, GQA)`, async () => {
        const k = variant.make();
        // [kvHeads, query heads per kv head, prompt length, headDim, seed]
        for (const [H, G, L, D, seed] of [[2, 2, 24, 8, 1], [2, 2, 24, 8, 2], [3, 1, 40, 16, 3], [1, 4, 17, 5, 4]] as const) {
          const s = script(H, G, L, D, 6, seed);
          const want = await play(ref, c.make(), s, 12);
          const got = await play(k, c.make(), s, 12);
          got.forEach((layer, i) => expectLayerClose(layer, want[i]!, `${c.name} H=${H} G=${G} L=${L} D=${D} seed ${seed} call ${i}`));
          for (const e of c.effect) e(got[0]!, s);
        }
        k.release();
      });
    }
  });
}
