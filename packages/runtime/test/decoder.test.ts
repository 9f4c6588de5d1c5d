import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { FullPolicy } from '@kvfold/policy-baselines';
import { SPECIFICATION_VERSION, type KVCachePolicy, type LayerCache, type Observation, type PolicyContext } from '@kvfold/core';
import { CacheManager, LlamaDecoder, Session, byteTokenizer, createModel, randomWeights, referenceForward, type LlamaConfig } from '../src/index.js';
import { tinyConfig } from './helpers/models.js';
import { maxAbsDiff, minimalKernels, useEngine, type TestEngine } from './helpers/tf.js';

const variants: [string, Record<string, unknown>][] = [
  ['llama GQA 4q/2kv', {}],
  ['tied embeddings', { tie_word_embeddings: true }],
  ['qwen2 with q/k/v biases', { model_type: 'qwen2' }],
  ['mistral sliding window 5', { model_type: 'mistral', sliding_window: 5 }],
  ['llama3 rope scaling, theta 5e5', { rope_theta: 500000, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 } }],
  ['MHA (kv heads = heads)', { num_key_value_heads: 4 }],
  ['MQA (1 kv head), head_dim 12', { num_key_value_heads: 1, head_dim: 12 }],
];

const tokens = [3, 17, 42, 5, 9, 61, 0, 33, 12, 12, 50, 7];

function decoderRun(config: LlamaConfig, seed: number, chunk?: number) {
  const weights = randomWeights(config, seed);
  const decoder = new LlamaDecoder(config, weights, chunk ? { queryChunk: chunk } : {});
  return { weights, decoder };
}

for (const engine of ['cpu', 'wasm'] as TestEngine[]) {
  describe(`decoder parity with the reference forward (${engine})`, async () => {
    const available = await useEngine(engine);
    it.skipIf(!available).each(variants)('%s: prefill logits and cached keys within 1e-4', async (_name, overrides) => {
      await useEngine(engine);
      const config = tinyConfig(overrides);
      const { weights, decoder } = decoderRun(config, 11);
      const cache = new CacheManager({ kernels: minimalKernels(), layers: config.layers, kvHeads: config.kvHeads, headDim: config.headDim });
      const positions = cache.reserve(tokens.length);
      const logits = decoder.forward(tokens, positions, cache, { logits: 'all' });
      const got = await logits.data();
      logits.dispose();
      const ref = referenceForward(config, weights, tokens);
      expect(got.length).toBe(tokens.length * config.vocabSize);
      expect(maxAbsDiff(got, ref.logits)).toBeLessThan(1e-4);
      const snap = await cache.snapshot();
      for (let l = 0; l < config.layers; l++) {
        expect(snap[l]!.keys.shape).toEqual([config.kvHeads, tokens.length, config.headDim]);
        expect(maxAbsDiff(snap[l]!.keys.data, ref.caches[l]!.keys.data)).toBeLessThan(1e-4);
        expect(maxAbsDiff(snap[l]!.values.data, ref.caches[l]!.values.data)).toBeLessThan(1e-4);
        expect(Array.from(snap[l]!.positions.data)).toEqual(Array.from(ref.caches[l]!.positions.data));
      }
      cache.dispose();
      decoder.dispose();
    });
  });
}

describe('decoder behaviour (cpu)', () => {
  beforeAll(async () => {
    expect(await useEngine('cpu')).toBe(true);
  });

  it('changing the prompt changes logits (the parity test is not vacuous)', async () => {
    const config = tinyConfig();
    const { decoder } = decoderRun(config, 3);
    const run = async (ts: number[]) => {
      const cache = new CacheManager({ kernels: minimalKernels(), layers: 2, kvHeads: 2, headDim: 8 });
      const out = decoder.forward(ts, cache.reserve(ts.length), cache);
      const d = await out.data();
      out.dispose();
      cache.dispose();
      return d;
    };
    const a = await run([1, 2, 3, 4]);
    const b = await run([1, 2, 3, 5]);
    expect(maxAbsDiff(a, b)).toBeGreaterThan(1e-3);
    decoder.dispose();
  });

  it('query chunking does not change logits or observed attention', async () => {
    const config = tinyConfig();
    const weights = randomWeights(config, 5);
    const results: { logits: Float32Array; attention: Float32Array[]; last: Float32Array[] }[] = [];
    for (const chunk of [256, 5, 1]) {
      const decoder = new LlamaDecoder(config, weights, { queryChunk: chunk });
      const seen: { attention: Float32Array[]; last: Float32Array[] } = { attention: [], last: [] };
      const spy = spyPolicy(['attention', 'lastAttention'], async (obs) => {
        seen.attention.push((await obs.attention!.data()) as Float32Array);
        seen.last.push((await obs.lastAttention!.data()) as Float32Array);
      });
      const model = createModel({ config, weights, kernels: minimalKernels(), tokenizer: byteTokenizer() });
      const session = new Session({ ...model, decoder }, { policy: spy });
      const logits = await session.prefill(tokens, { logits: 'all' });
      results.push({ logits, ...seen });
      session.dispose();
      decoder.dispose();
      model.dispose();
    }
    for (const r of results.slice(1)) {
      expect(maxAbsDiff(r.logits, results[0]!.logits)).toBeLessThan(1e-5);
      for (let l = 0; l < 2; l++) {
        expect(maxAbsDiff(r.attention[l]!, results[0]!.attention[l]!)).toBeLessThan(1e-5);
        expect(maxAbsDiff(r.last[l]!, results[0]!.last[l]!)).toBeLessThan(1e-5);
      }
    }
  });

  it.each(['mean', 'max', 'sum'] as const)('observed attention (%s over the GQA group) equals the reference, at prefill and at a decode step', async (reduction) => {
    const config = tinyConfig();
    const weights = randomWeights(config, 8);
    const model = createModel({ config, weights, kernels: minimalKernels(), tokenizer: byteTokenizer() });
    const seen: { attention: Float32Array; last: Float32Array; queries: number[] }[][] = [];
    const spy = spyPolicy(['attention', 'lastAttention', 'queries'], async (obs, ctx) => {
      (seen[ctx.step] ??= [])[ctx.layerIndex] = {
        attention: (await obs.attention!.data()) as Float32Array,
        last: (await obs.lastAttention!.data()) as Float32Array,
        queries: [...obs.queries!.shape],
      };
    });
    const session = new Session(model, { policy: spy, groupReduction: reduction });
    const prompt = tokens.slice(0, 9);
    await session.prefill(prompt);
    await session.decode(20);
    const ref0 = referenceForward(config, weights, prompt, { groupReduction: reduction });
    const ref1 = referenceForward(config, weights, [20], { caches: ref0.caches, groupReduction: reduction });
    for (let l = 0; l < 2; l++) {
      expect(maxAbsDiff(seen[0]![l]!.attention, ref0.attention[l]!)).toBeLessThan(1e-5);
      expect(maxAbsDiff(seen[0]![l]!.last, ref0.lastAttention[l]!)).toBeLessThan(1e-5);
      expect(seen[0]![l]!.queries).toEqual([4, 9, 8]);
      expect(maxAbsDiff(seen[1]![l]!.attention, ref1.attention[l]!)).toBeLessThan(1e-5);
      expect(seen[1]![l]!.attention.length).toBe(2 * 10);
      expect(seen[1]![l]!.queries).toEqual([4, 1, 8]);
    }
    // Sums over queries of a probability distribution: every query contributes 1 per query head.
    const total = seen[0]![0]!.attention.reduce((a, b) => a + b, 0);
    const perQueryHeadGroup = { mean: 1, max: NaN, sum: 2 }[reduction];
    if (!Number.isNaN(perQueryHeadGroup)) expect(total).toBeCloseTo(prompt.length * 2 * perQueryHeadGroup, 4);
    session.dispose();
    model.dispose();
  });

  it.each([
    ['mean', false],
    ['max', true],
    ['sum', false],
  ] as const)("the decoder's fused observation equals the observe kernel's (%s, proportional %s), at prefill and decode steps", async (reduction, proportional) => {
    // The decoder computes attention from its own softmax; `observation: 'kernel'` makes the cache manager
    // compute it with kernels.observe from the decoder's queries instead. Both must agree.
    const config = tinyConfig();
    const weights = randomWeights(config, 13);
    const run = async (observation: 'model' | 'kernel') => {
      const model = createModel({ config, weights, kernels: minimalKernels(), tokenizer: byteTokenizer() });
      const seen: Float32Array[] = [];
      const spy = spyPolicy(['attention', 'lastAttention'], async (obs) => {
        seen.push((await obs.attention!.data()) as Float32Array, (await obs.lastAttention!.data()) as Float32Array);
      });
      const session = new Session(model, { policy: spy, groupReduction: reduction, proportional, observation });
      expect(session.cache.observe).toEqual({ attention: observation === 'model', lastAttention: observation === 'model', queries: true });
      await session.prefill(tokens.slice(0, 10));
      await session.decode(4);
      await session.feed([8, 9]);
      session.dispose();
      model.dispose();
      return seen;
    };
    const fused = await run('model');
    const kernel = await run('kernel');
    expect(kernel.length).toBe(fused.length);
    expect(fused.length).toBe(3 * 2 * 2);
    fused.forEach((f, i) => expect(maxAbsDiff(f, kernel[i]!)).toBeLessThan(1e-5));
  });

  it('cached token-by-token decode equals uncached recomputation (full policy, within 1e-4)', async () => {
    const config = tinyConfig();
    const weights = randomWeights(config, 21);
    const model = createModel({ config, weights, kernels: minimalKernels(), tokenizer: byteTokenizer() });
    const seq = [5, 9, 33, 2, 60, 41, 18, 7, 7, 29, 3, 14];
    const cached = new Session(model, { policy: new FullPolicy(), budget: 1 });
    let stepLogits = await cached.prefill(seq.slice(0, 6));
    for (let t = 6; t <= seq.length; t++) {
      const fresh = new Session(model);
      const full = await fresh.prefill(seq.slice(0, t));
      fresh.dispose();
      expect(maxAbsDiff(stepLogits, full)).toBeLessThan(1e-4);
      if (t < seq.length) stepLogits = await cached.decode(seq[t]!);
    }
    expect(cached.cache.lengths()).toEqual([seq.length, seq.length]);
    expect(cached.cache.position).toBe(seq.length);
    cached.dispose();
    model.dispose();
  });

  it('releases every tensor it creates (forward, session, dispose)', async () => {
    const config = tinyConfig();
    const before = tf.memory().numTensors;
    const model = createModel({ config, weights: randomWeights(config, 1), kernels: minimalKernels(), tokenizer: byteTokenizer() });
    const withWeights = tf.memory().numTensors;
    for (let r = 0; r < 2; r++) {
      const s = new Session(model, { policy: spyPolicy(['attention', 'lastAttention', 'queries'], async () => {}) });
      await s.prefill([1, 2, 3, 4, 5]);
      await s.decode(6);
      await s.decode(7);
      s.dispose();
      expect(tf.memory().numTensors).toBe(withWeights);
    }
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects token ids outside the vocabulary with a typed error naming the field', async () => {
    const config = tinyConfig();
    const model = createModel({ config, weights: randomWeights(config, 1), kernels: minimalKernels(), tokenizer: byteTokenizer() });
    const s = new Session(model);
    await expect(s.prefill([1, 64])).rejects.toMatchObject({ code: 'KVF_MODEL', details: { field: 'tokens' } });
    await expect(s.prefill([1.5])).rejects.toMatchObject({ code: 'KVF_MODEL' });
    expect(s.cache.position).toBe(0);
    s.dispose();
    model.dispose();
  });
});

/** A policy that only records what it observes and returns the cache unchanged. */
export function spyPolicy(needs: KVCachePolicy['needs'], onCall: (obs: Observation<tf.Tensor>, ctx: PolicyContext<tf.Tensor>) => Promise<void>): KVCachePolicy {
  const call = async <T>(layer: LayerCache<T>, obs: Observation<T>, ctx: PolicyContext<T>) => {
    await onCall(obs as unknown as Observation<tf.Tensor>, ctx as unknown as PolicyContext<tf.Tensor>);
    return layer;
  };
  return { specificationVersion: SPECIFICATION_VERSION, name: 'spy', needs, prefill: call, step: call };
}
