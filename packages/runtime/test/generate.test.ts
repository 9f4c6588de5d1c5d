import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, KVFold, createRng } from '@kvfold/core';
import baselines from '@kvfold/policy-baselines';
import { byteTokenizer, createModel, generate, randomWeights, referenceForward, sampleToken, type Model } from '../src/index.js';
import { tinyConfig } from './helpers/models.js';
import { bridgeKernels, minimalKernels, useEngine } from './helpers/tf.js';

function argmax(a: ArrayLike<number>, from = 0, n = a.length): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (a[from + i]! > a[from + best]!) best = i;
  return best;
}

describe('generate', () => {
  let model: Model;
  let bytesModel: Model;
  const config = tinyConfig({ eos_token_id: null });
  const weights = randomWeights(config, 77, 0.5);
  beforeAll(async () => {
    expect(await useEngine('cpu')).toBe(true);
    model = createModel({ config, weights, kernels: minimalKernels(), tokenizer: byteTokenizer() });
    const c256 = tinyConfig({ vocab_size: 256, eos_token_id: null });
    bytesModel = createModel({ config: c256, weights: randomWeights(c256, 5, 0.5), kernels: minimalKernels(), tokenizer: byteTokenizer() });
  });
  const prompt = [10, 20, 30, 40, 50, 60];

  it('greedy decoding equals arg-max over the reference forward of the growing sequence', async () => {
    const r = await generate({ model, prompt, maxNewTokens: 8 });
    const seq = [...prompt];
    const want: number[] = [];
    for (let i = 0; i < 8; i++) {
      const logits = referenceForward(config, weights, seq).logits;
      const t = argmax(logits, (seq.length - 1) * 64, 64);
      want.push(t);
      seq.push(t);
    }
    expect(r.tokens).toEqual(want);
    expect(r.finishReason).toBe('length');
    expect(r.promptTokens).toBe(6);
    expect(r.timings.decodeSteps).toBe(7);
    expect(r.cache.lengths).toEqual([13, 13]);
    expect(r.cache.positions).toBe(13);
    expect(r.cache.finalBytes).toBe(2 * 2 * 13 * (2 * 8 * 4 + 12));
    expect(r.cache.peakBytes).toBe(r.cache.finalBytes);
    expect(r.timings.prefillMs).toBeGreaterThanOrEqual(0);
    expect(r.timings.decodeTokensPerSecond).toBeGreaterThan(0);
  });

  it('seeded sampling is reproducible; top-k 1 and a tiny top-p reduce to greedy; seeds differ', async () => {
    const greedy = await generate({ model, prompt, maxNewTokens: 10 });
    const a = await generate({ model, prompt, maxNewTokens: 10, temperature: 1.5, seed: 3 });
    const b = await generate({ model, prompt, maxNewTokens: 10, temperature: 1.5, seed: 3 });
    expect(a.tokens).toEqual(b.tokens);
    expect((await generate({ model, prompt, maxNewTokens: 10, temperature: 2, topK: 1, seed: 4 })).tokens).toEqual(greedy.tokens);
    expect((await generate({ model, prompt, maxNewTokens: 10, temperature: 2, topP: 1e-6, seed: 4 })).tokens).toEqual(greedy.tokens);
    const hot = await Promise.all([1, 2].map((seed) => generate({ model, prompt, maxNewTokens: 20, temperature: 5, seed })));
    expect(hot[0]!.tokens).not.toEqual(hot[1]!.tokens);
  });

  it('sampleToken honours top-k and top-p and follows the softmax', () => {
    const logits = Float32Array.from([Math.log(0.5), Math.log(0.3), Math.log(0.2)]);
    const rng = createRng(1);
    const counts = [0, 0, 0];
    for (let i = 0; i < 3000; i++) counts[sampleToken(logits, { temperature: 1, topK: 0, topP: 1 }, rng)]!++;
    expect(counts[0]! / 3000).toBeCloseTo(0.5, 1);
    expect(counts[2]! / 3000).toBeCloseTo(0.2, 1);
    for (let i = 0; i < 200; i++) {
      expect(sampleToken(logits, { temperature: 1, topK: 2, topP: 1 }, rng)).toBeLessThan(2);
      expect(sampleToken(logits, { temperature: 1, topK: 0, topP: 0.6 }, rng)).toBeLessThan(2);
    }
    expect(sampleToken(Float32Array.from([1, 3, 3]), { temperature: 0, topK: 0, topP: 1 }, rng)).toBe(1);
  });

  it('stops at EOS, at stop ids and at stop strings (text cut before the stop string)', async () => {
    const base = await generate({ model: bytesModel, prompt: 'abc', maxNewTokens: 12 });
    expect(base.tokens).toHaveLength(12);
    const third = base.tokens[2]!;
    const first = base.tokens.indexOf(third);
    const withEos = createModel({ config: { ...bytesModel.config, eosTokenIds: [third] }, weights: randomWeights(tinyConfig({ vocab_size: 256 }), 5, 0.5), kernels: minimalKernels(), tokenizer: byteTokenizer() });
    const e = await generate({ model: withEos, prompt: 'abc', maxNewTokens: 12 });
    expect(e.finishReason).toBe('eos');
    expect(e.tokens).toEqual(base.tokens.slice(0, first + 1));
    expect((await generate({ model: withEos, prompt: 'abc', maxNewTokens: 12, stopAtEos: false })).tokens).toEqual(base.tokens);
    withEos.dispose();
    const s = await generate({ model: bytesModel, prompt: 'abc', maxNewTokens: 12, stop: [third] });
    expect(s.finishReason).toBe('stop');
    expect(s.tokens).toEqual(base.tokens.slice(0, first + 1));
    const full = bytesModel.tokenizer.decode(base.tokens);
    const stopString = full.slice(4, 6);
    const cut = full.indexOf(stopString);
    const t = await generate({ model: bytesModel, prompt: 'abc', maxNewTokens: 12, stop: ['never-there', stopString] });
    expect(t.finishReason).toBe('stop');
    expect(t.text).toBe(full.slice(0, cut));
    expect(bytesModel.tokenizer.decode(t.tokens).endsWith(stopString)).toBe(true);
  });

  it('streams tokens whose texts concatenate to the final text (stop strings and partial UTF-8 held back)', async () => {
    for (const seed of [1, 2, 3]) {
      for (const stop of [[], ['zz'], ['\u00e9']]) {
        const events: { token: number; index: number; text: string }[] = [];
        const r = await generate({ model: bytesModel, prompt: 'hi', maxNewTokens: 30, temperature: 3, seed, stop, onToken: (e) => events.push(e) });
        expect(events.map((e) => e.token)).toEqual(r.tokens);
        expect(events.map((e) => e.index)).toEqual(r.tokens.map((_, i) => i));
        expect(events.map((e) => e.text).join('')).toBe(r.text);
      }
    }
  });

  it('accepts a prompt string (encoded by the tokenizer) like the same ids', async () => {
    const a = await generate({ model: bytesModel, prompt: 'kv', maxNewTokens: 4 });
    const b = await generate({ model: bytesModel, prompt: [107, 118], maxNewTokens: 4 });
    expect(a.tokens).toEqual(b.tokens);
    expect(a.text).toBe(bytesModel.tokenizer.decode(a.tokens));
  });

  it('leaves no tensors behind across generate calls', async () => {
    const before = tf.memory().numTensors;
    await generate({ model, prompt, maxNewTokens: 5 });
    await generate({ model, prompt, maxNewTokens: 5, temperature: 1, seed: 1 });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects invalid options with a ConfigError naming each field', async () => {
    const err = await generate({ model, prompt, temperature: -1, topP: 0, maxNewTokens: -2, topK: 1.5, stop: [''], seed: -1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues.map((i) => i.path).sort()).toEqual(['/maxNewTokens', '/seed', '/stop/0', '/temperature', '/topK', '/topP']);
    await expect(generate({ model, prompt: [] })).rejects.toMatchObject({ code: 'KVF_MODEL', details: { field: 'prompt' } });
    await expect(generate({ model, prompt: [99] })).rejects.toMatchObject({ code: 'KVF_MODEL', details: { field: 'tokens' } });
    expect((await generate({ model, prompt, maxNewTokens: 0 })).tokens).toEqual([]);
  });
  it('reads a context before the prompt: the same tokens as one prompt without a policy; the budget counts the context only', async () => {
    const context = [10, 20, 30, 40, 50, 60, 11, 12, 13, 14];
    const question = [21, 22, 23];
    const whole = await generate({ model, prompt: [...context, ...question], maxNewTokens: 6 });
    const split = await generate({ model, context, prompt: question, maxNewTokens: 6 });
    expect(split.tokens).toEqual(whole.tokens);
    expect([split.contextTokens, split.promptTokens, whole.contextTokens, whole.promptTokens]).toEqual([10, 3, 0, 13]);
    const window = KVFold.create({ plugins: [baselines] }).policy('window', { sink: 2 });
    const bridged = createModel({ config, weights, kernels: bridgeKernels(), tokenizer: byteTokenizer() });
    const r = await generate({ model: bridged, context, prompt: question, policy: window, budget: 0.5, maxNewTokens: 4 });
    bridged.dispose();
    expect(r.cache.budget).toBe(5);
    expect(r.cache.lengths).toEqual([5, 5]);
    const text = await generate({ model: bytesModel, context: 'kv cache ', prompt: 'fold', maxNewTokens: 5 });
    expect(text.tokens).toEqual((await generate({ model: bytesModel, prompt: 'kv cache fold', maxNewTokens: 5 })).tokens);
    expect([text.contextTokens, text.promptTokens]).toEqual([9, 4]);
    await expect(generate({ model, context: 'text', prompt: question, maxNewTokens: 1 })).rejects.toThrow(/\/context/);
  });
});
