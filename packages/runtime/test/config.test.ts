import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ConfigError } from '@kvfold/core';
import { parseModelConfig, ropeInverseFrequencies, ropeTables } from '../src/index.js';
import { tinyConfigJson } from './helpers/models.js';

function issuesOf(f: () => unknown): { path: string; rule: string }[] {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).issues.map((i) => ({ path: i.path, rule: i.rule }));
  }
  throw new Error('expected a ConfigError');
}

describe('parseModelConfig', () => {
  it('reads a Llama config and fills HF defaults', () => {
    const c = parseModelConfig({ model_type: 'llama', vocab_size: 100, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 3, num_attention_heads: 8 });
    expect(c).toMatchObject({ modelType: 'llama', kvHeads: 8, headDim: 8, ropeTheta: 10000, rmsNormEps: 1e-6, tieWordEmbeddings: false, maxPositionEmbeddings: 2048, attentionBias: false, tokenizer: 'huggingface', eosTokenIds: [] });
    expect(c.slidingWindow).toBeUndefined();
  });

  it('reads GQA, explicit head_dim, eos lists, qwen2 biases, mistral window and the kvfold extension', () => {
    expect(parseModelConfig(tinyConfigJson({ head_dim: 16, eos_token_id: [1, 2] }))).toMatchObject({ kvHeads: 2, headDim: 16, eosTokenIds: [1, 2], tokenizer: 'bytes' });
    expect(parseModelConfig(tinyConfigJson({ model_type: 'qwen2' })).attentionBias).toBe(true);
    expect(parseModelConfig(tinyConfigJson({ attention_bias: true })).attentionBias).toBe(true);
    expect(parseModelConfig(tinyConfigJson({ model_type: 'mistral', sliding_window: 4096 })).slidingWindow).toBe(4096);
    expect(parseModelConfig(tinyConfigJson({ model_type: 'mistral', sliding_window: null })).slidingWindow).toBeUndefined();
    expect(parseModelConfig(tinyConfigJson({ rope_scaling: { rope_type: 'linear', factor: 2 } })).ropeScaling).toEqual({ type: 'linear', factor: 2 });
  });

  it('names every invalid field with its JSON path and rule', () => {
    expect(issuesOf(() => parseModelConfig(tinyConfigJson({ model_type: 'gpt2' })))).toEqual([{ path: '/model_type', rule: 'enum' }]);
    expect(issuesOf(() => parseModelConfig(tinyConfigJson({ hidden_size: undefined })))).toEqual([{ path: '/hidden_size', rule: 'required' }]);
    expect(issuesOf(() => parseModelConfig(tinyConfigJson({ num_key_value_heads: 3 })))).toEqual([{ path: '/num_key_value_heads', rule: 'multipleOf' }]);
    expect(issuesOf(() => parseModelConfig(tinyConfigJson({ vocab_size: 0, rope_theta: -1 })))).toEqual([
      { path: '/vocab_size', rule: 'minimum' },
      { path: '/rope_theta', rule: 'exclusiveMinimum' },
    ]);
    expect(issuesOf(() => parseModelConfig(tinyConfigJson({ hidden_size: 30, num_attention_heads: 4 })))).toEqual([{ path: '/head_dim', rule: 'required' }]);
    expect(issuesOf(() => parseModelConfig(tinyConfigJson({ head_dim: 7 })))).toEqual([{ path: '/head_dim', rule: 'multipleOf' }]);
    expect(issuesOf(() => parseModelConfig(tinyConfigJson({ hidden_act: 'gelu' })))).toEqual([{ path: '/hidden_act', rule: 'enum' }]);
    expect(issuesOf(() => parseModelConfig(tinyConfigJson({ rope_scaling: { rope_type: 'yarn', factor: 4 } })))).toEqual([{ path: '/rope_scaling/rope_type', rule: 'enum' }]);
    expect(issuesOf(() => parseModelConfig(tinyConfigJson({ kvfold: { tokenizer: 'sentencepiece' } })))).toEqual([{ path: '/kvfold/tokenizer', rule: 'enum' }]);
    expect(issuesOf(() => parseModelConfig(tinyConfigJson({ model_type: 'qwen2', use_sliding_window: true })))).toEqual([{ path: '/use_sliding_window', rule: 'const' }]);
    expect(issuesOf(() => parseModelConfig(tinyConfigJson({ tie_word_embeddings: 'yes', eos_token_id: -1 })))).toEqual([
      { path: '/tie_word_embeddings', rule: 'type' },
      { path: '/eos_token_id', rule: 'type' },
    ]);
    expect(issuesOf(() => parseModelConfig([]))).toEqual([{ path: '', rule: 'type' }]);
  });

  it('RoPE tables pair dimension i with i + d/2 and are identity at position 0', () => {
    const c = { headDim: 8, ropeTheta: 10000 };
    const { cos, sin } = ropeTables(c, [0, 3]);
    expect(Array.from(cos.subarray(0, 8))).toEqual(new Array(8).fill(1));
    expect(Array.from(sin.subarray(0, 8))).toEqual(new Array(8).fill(0));
    // i = 0: inverse frequency 1, so angle = position.
    expect(cos[8]).toBeCloseTo(Math.cos(3), 6);
    expect(sin[12]).toBeCloseTo(Math.sin(3), 6);
    expect(cos[9]).toBeCloseTo(Math.cos(3 / Math.pow(10000, 2 / 8)), 6);
  });

  it('llama3 scaling keeps high frequencies, divides low ones by the factor, and blends monotonically', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 32 }).map((h) => h * 2), fc.double({ min: 1.5, max: 16, noNaN: true }), (d, factor) => {
        const base = ropeInverseFrequencies({ headDim: d, ropeTheta: 500000 });
        const s = ropeInverseFrequencies({ headDim: d, ropeTheta: 500000, ropeScaling: { type: 'llama3', factor, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } });
        for (let i = 0; i < d / 2; i++) {
          const ratio = s[i]! / base[i]!;
          expect(ratio).toBeLessThanOrEqual(1 + 1e-12);
          expect(ratio).toBeGreaterThanOrEqual(1 / factor - 1e-12);
          if (i > 0) expect(s[i]!).toBeLessThanOrEqual(s[i - 1]! + 1e-15);
        }
        expect(s[0]).toBe(base[0]);
      }),
      { numRuns: 30 },
    );
  });
});
