import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  SPECIFICATION_VERSION,
  hostLayer,
  layerFromHost,
  layerToHost,
  type HostLayer,
  type KVCachePolicy,
  type LayerCache,
  type Observation,
  type PolicyContext,
} from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { hostTensor } from '@kvfold/core';
import { CacheManager, Session, byteTokenizer, createModel, randomWeights, referenceForward } from '../src/index.js';
import { tinyConfig } from './helpers/models.js';
import { maxAbsDiff, minimalKernels, useEngine } from './helpers/tf.js';

/** Build a new host layer from chosen slots of each head (same count per head), with optional new counts. */
function pick(h: HostLayer, slots: number[][], counts?: (slot: number, head: number) => number): HostLayer {
  const [H, L, d] = h.keys.shape as [number, number, number];
  const k = slots[0]!.length;
  const keys: number[] = [];
  const values: number[] = [];
  const positions: number[] = [];
  const cnt: number[] = [];
  const scores: number[] = [];
  for (let head = 0; head < H; head++) {
    for (const s of slots[head]!) {
      keys.push(...h.keys.data.subarray((head * L + s) * d, (head * L + s + 1) * d));
      values.push(...h.values.data.subarray((head * L + s) * d, (head * L + s + 1) * d));
      positions.push(h.positions.data[head * L + s]!);
      cnt.push(counts ? counts(s, head) : h.counts.data[head * L + s]!);
      scores.push(h.scores.data[head * L + s]!);
    }
  }
  return hostLayer({ heads: H, length: k, headDim: d, keys, values, positions, counts: cnt, scores });
}

/**
 * Test policy: keeps the first slot plus the most recent `budget - 1` at prefill (per head a different
 * choice on head 1, so heads diverge), then evicts the oldest non-first slot on every step over budget.
 * Implemented on host copies, which the contract allows.
 */
function hostPolicy(opts: { counts?: (slot: number, head: number) => number; calls?: PolicyContext<unknown>[] } = {}): KVCachePolicy {
  const run = async <T>(layer: LayerCache<T>, _obs: Observation<T>, ctx: PolicyContext<T>, prefill: boolean): Promise<LayerCache<T>> => {
    opts.calls?.push(ctx as PolicyContext<unknown>);
    const k = ctx.kernels;
    const h = await layerToHost(k, layer);
    const [H, L] = h.keys.shape as [number, number];
    if (L <= ctx.budget) return layer;
    const slots: number[][] = [];
    for (let head = 0; head < H; head++) {
      const recent = Array.from({ length: ctx.budget - 1 }, (_, i) => L - ctx.budget + 1 + i);
      // Head 1 keeps slot 1 instead of slot 0, so heads hold different tokens.
      slots.push([head === 1 ? 1 : 0, ...recent.filter((s) => s !== (head === 1 ? 1 : 0))].slice(0, ctx.budget));
    }
    if (slots.some((s) => s.length !== ctx.budget)) throw new Error('test policy bug');
    return layerFromHost(k, pick(h, slots, prefill ? opts.counts : undefined));
  };
  return {
    specificationVersion: SPECIFICATION_VERSION,
    name: 'host-test',
    needs: [],
    prefill: (l, o, c) => run(l, o, c, true),
    step: (l, o, c) => run(l, o, c, false),
  };
}

describe('cache manager', () => {
  beforeAll(async () => {
    expect(await useEngine('cpu')).toBe(true);
  });
  const config = tinyConfig();
  const weights = randomWeights(config, 31);
  const prompt = [4, 8, 15, 16, 23, 42, 7, 1, 2, 3];

  it('keeps the true position counter separate from the cache length; decode over an evicted cache matches the reference', async () => {
    const model = createModel({ config, weights, kernels: minimalKernels(), tokenizer: byteTokenizer() });
    const s = new Session(model, { policy: hostPolicy(), budget: 0.5 });
    await s.prefill(prompt);
    expect(s.cache.budget).toBe(5);
    expect(s.cache.lengths()).toEqual([5, 5]);
    expect(s.cache.position).toBe(10);
    let caches = await s.cache.snapshot();
    expect(Array.from(caches[0]!.positions.data)).toEqual([0, 6, 7, 8, 9, 1, 6, 7, 8, 9]);
    for (const [i, token] of [30, 31, 32].entries()) {
      const logits = await s.decode(token);
      const ref = referenceForward(config, weights, [token], { caches, positions: [10 + i] });
      expect(maxAbsDiff(logits, ref.logits)).toBeLessThan(1e-4);
      caches = await s.cache.snapshot();
      const pos = Array.from(caches[0]!.positions.data);
      expect(pos.slice(0, 5)).toEqual([0, 7 + i, 8 + i, 9 + i, 10 + i]);
      expect(s.cache.lengths()).toEqual([5, 5]);
    }
    expect(s.cache.position).toBe(13);
    // The same decode with positions taken from the cache length would see other RoPE angles.
    const wrong = referenceForward(config, weights, [33], { caches, positions: [5] });
    const right = await s.decode(33);
    expect(maxAbsDiff(right, wrong.logits)).toBeGreaterThan(1e-4);
    s.dispose();
    model.dispose();
  });

  it('proportional attention adds log(count) for merged slots (matches the reference, and differs from plain attention)', async () => {
    const model = createModel({ config, weights, kernels: minimalKernels(), tokenizer: byteTokenizer() });
    const counts = (slot: number, head: number) => 1 + ((slot + head) % 3);
    const out: Float32Array[] = [];
    for (const proportional of [true, false]) {
      const s = new Session(model, { policy: hostPolicy({ counts }), budget: 0.5, proportional });
      await s.prefill(prompt);
      const caches = await s.cache.snapshot();
      expect(Math.max(...caches[0]!.counts.data)).toBeGreaterThan(1);
      const logits = await s.decode(30);
      const ref = referenceForward(config, weights, [30], { caches, positions: [10], proportional });
      expect(maxAbsDiff(logits, ref.logits)).toBeLessThan(1e-4);
      out.push(logits);
      s.dispose();
    }
    expect(maxAbsDiff(out[0]!, out[1]!)).toBeGreaterThan(1e-4);
    model.dispose();
  });

  it('builds each policy context with core createContext: budget, step, newTokens, prompt length, layer, seeded RNG', async () => {
    const model = createModel({ config, weights, kernels: minimalKernels(), tokenizer: byteTokenizer() });
    const calls: PolicyContext<unknown>[] = [];
    const s = new Session(model, { policy: hostPolicy({ calls }), budget: { tokens: 4 }, seed: 9 });
    await s.prefill(prompt);
    await s.feed([5, 6]);
    await s.decode(7);
    expect(calls.map((c) => [c.step, c.layerIndex, c.layerCount, c.newTokens, c.promptLength, c.budget])).toEqual([
      [0, 0, 2, 10, 10, 4],
      [0, 1, 2, 10, 10, 4],
      [1, 0, 2, 2, 10, 4],
      [1, 1, 2, 2, 10, 4],
      [2, 0, 2, 1, 10, 4],
      [2, 1, 2, 1, 10, 4],
    ]);
    const draws = calls.map((c) => c.rng.next());
    expect(new Set(draws).size).toBe(draws.length);
    const calls2: PolicyContext<unknown>[] = [];
    const s2 = new Session(model, { policy: hostPolicy({ calls: calls2 }), budget: { tokens: 4 }, seed: 9 });
    await s2.prefill(prompt);
    expect(calls2[1]!.rng.next()).toBe(draws[1]);
    s.dispose();
    s2.dispose();
    model.dispose();
  });

  it('passes exactly the declared observations', async () => {
    const model = createModel({ config, weights, kernels: minimalKernels(), tokenizer: byteTokenizer() });
    for (const needs of [[], ['attention'], ['lastAttention'], ['queries'], ['attention', 'lastAttention', 'queries']] as KVCachePolicy['needs'][]) {
      const got: string[][] = [];
      const policy: KVCachePolicy = {
        specificationVersion: SPECIFICATION_VERSION,
        name: 'needs-test',
        needs,
        prefill: async (l, o) => (got.push(Object.keys(o).sort()), l),
        step: async (l, o) => (got.push(Object.keys(o).sort()), l),
      };
      const s = new Session(model, { policy });
      await s.prefill(prompt.slice(0, 4));
      await s.decode(9);
      expect(got).toEqual([...Array(4)].map(() => [...needs].sort()));
      s.dispose();
    }
    model.dispose();
  });

  it('tracks cache bytes: peak before compression, final after', async () => {
    const model = createModel({ config, weights, kernels: minimalKernels(), tokenizer: byteTokenizer() });
    const perSlot = 2 * 8 * 4 + 3 * 4;
    const s = new Session(model, { policy: hostPolicy(), budget: 0.5 });
    await s.prefill(prompt);
    expect(s.cache.peakBytes).toBe(2 * 2 * 10 * perSlot);
    expect(s.cache.bytes()).toBe(2 * 2 * 5 * perSlot);
    await s.decode(1);
    expect(s.cache.peakBytes).toBe(2 * 2 * 10 * perSlot);
    expect(s.cache.bytes()).toBe(2 * 2 * 5 * perSlot);
    s.dispose();
    model.dispose();
  });

  it('refuses bad budgets and bad policy results with typed errors, leaking nothing', async () => {
    const model = createModel({ config, weights, kernels: minimalKernels(), tokenizer: byteTokenizer() });
    const base = tf.memory().numTensors;
    for (const budget of [0, 1.5, { tokens: 11 }, { tokens: 2.5 }]) {
      const s = new Session(model, { policy: hostPolicy(), budget });
      await expect(s.prefill(prompt)).rejects.toMatchObject({ code: 'KVF_BUDGET' });
      s.dispose();
    }
    const broken: KVCachePolicy = {
      specificationVersion: SPECIFICATION_VERSION,
      name: 'broken',
      needs: [],
      prefill: async <T>(l: LayerCache<T>, _o: Observation<T>, c: PolicyContext<T>) => ({ ...l, positions: c.kernels.fromHost(hostLayer({ heads: 2, length: 3, headDim: 8, keys: new Float32Array(48), values: new Float32Array(48) }).positions) }),
      step: async (l) => l,
    };
    const s = new Session(model, { policy: broken });
    await expect(s.prefill(prompt)).rejects.toMatchObject({ code: 'KVF_SHAPE' });
    s.dispose();
    expect(tf.memory().numTensors).toBe(base);
    model.dispose();
  });

  it('replace() takes a cache the model built itself (the transformers.js path): old tensors it does not hold are released, a wrong shape is a ModelError', async () => {
    const k = createReferenceKernels();
    const disposed: unknown[] = [];
    const spy: typeof k = { ...k, dispose: (...ts) => void disposed.push(...ts) };
    const calls: PolicyContext<unknown>[] = [];
    const cm = new CacheManager({ kernels: spy, layers: 1, kvHeads: 2, headDim: 8, policy: hostPolicy({ calls }), budget: { tokens: 4 } });
    const host = (n: number) => hostLayer({ heads: 2, length: n, headDim: 8, keys: Array.from({ length: 16 * n }, (_, i) => Math.sin(i)), values: Array.from({ length: 16 * n }, (_, i) => Math.cos(i)), positions: Array.from({ length: 2 * n }, (_, i) => i % n) });
    cm.reserve(6);
    const first = layerFromHost(k, host(6));
    cm.replace(0, first);
    await cm.compress();
    expect(cm.lengths()).toEqual([4]);
    expect(calls.map((c) => [c.step, c.newTokens, c.budget])).toEqual([[0, 6, 4]]);
    const kept = cm.layer(0)!;
    cm.reserve(1);
    // The model's own concatenation: the kept keys and values plus one slot, with new positions, counts, scores.
    const next = { ...layerFromHost(k, host(5)), keys: kept.keys };
    disposed.length = 0;
    cm.replace(0, next);
    expect(disposed).toContain(kept.values);
    expect(disposed).not.toContain(kept.keys);
    expect(cm.peakBytes).toBeGreaterThan(0);
    expect(() => cm.replace(0, layerFromHost(k, hostLayer({ heads: 3, length: 2, headDim: 8, keys: new Float32Array(48), values: new Float32Array(48) })))).toThrow(/do not match \[2, \*, 8\]/);
    expect(() => cm.replace(1, next)).toThrow(/layer 1 is outside 0..0/);
    cm.dispose();
  });

  it.each([
    ['mean', false],
    ['max', true],
    ['sum', true],
  ] as const)('observations (%s, proportional %s) over a compressed, merged cache equal the reference observe kernel', async (reduction, proportional) => {
    const model = createModel({ config, weights, kernels: minimalKernels(), tokenizer: byteTokenizer() });
    const compress = hostPolicy({ counts: (slot, head) => 1 + ((slot * 3 + head) % 4) });
    const seen: { attention: Float32Array; last: Float32Array; queries: Float32Array; shape: number[] }[] = [];
    const policy: KVCachePolicy = {
      specificationVersion: SPECIFICATION_VERSION,
      name: 'observe-test',
      needs: ['attention', 'lastAttention', 'queries'],
      prefill: (l, o, c) => compress.prefill(l, o, c),
      step: async (l, o) => {
        const t = o as Observation<unknown> as Observation<tf.Tensor>;
        seen.push({ attention: (await t.attention!.data()) as Float32Array, last: (await t.lastAttention!.data()) as Float32Array, queries: (await t.queries!.data()) as Float32Array, shape: [...t.queries!.shape] });
        return l;
      },
    };
    const s = new Session(model, { policy, budget: 0.6, groupReduction: reduction, proportional });
    await s.prefill(prompt);
    await s.feed([11, 12, 13]);
    const ref = createReferenceKernels();
    const caches = await s.cache.snapshot();
    for (let l = 0; l < 2; l++) {
      const o = ref.observe(caches[l]!, hostTensor('float32', seen[l]!.shape, seen[l]!.queries), hostTensor('int32', [3], [10, 11, 12]), { groupReduction: reduction, proportional });
      expect(maxAbsDiff(seen[l]!.attention, o.attention.data)).toBeLessThan(1e-5);
      expect(maxAbsDiff(seen[l]!.last, o.lastAttention.data)).toBeLessThan(1e-5);
    }
    s.dispose();
    model.dispose();
  });
});
