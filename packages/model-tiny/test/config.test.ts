import { describe, it, expect } from 'vitest';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { modelTinyPath, toHfConfig } from '../src/index.js';
import { readTensors } from '../src/train/tensors.js';

const REQUIRED = [
  'architectures', 'model_type', 'vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads',
  'num_key_value_heads', 'head_dim', 'max_position_embeddings', 'rope_theta', 'rms_norm_eps', 'tie_word_embeddings', 'hidden_act',
];

function checkConfig(j: Record<string, unknown>): void {
  for (const k of REQUIRED) expect(j, k).toHaveProperty(k);
  expect(j.architectures).toEqual(['LlamaForCausalLM']);
  expect(j.model_type).toBe('llama');
  expect(j.hidden_act).toBe('silu');
  expect((j.kvfold as { tokenizer: string }).tokenizer).toBe('bytes');
  expect(j.vocab_size as number).toBeGreaterThanOrEqual(256);
  expect(j.max_position_embeddings as number).toBeGreaterThanOrEqual(2048);
  expect((j.num_attention_heads as number) % (j.num_key_value_heads as number)).toBe(0);
  expect(j.num_key_value_heads as number).toBeLessThan(j.num_attention_heads as number);
}

describe('config', () => {
  it('toHfConfig fills every LlamaConfig field', () => {
    const j = toHfConfig({ vocabSize: 258, hidden: 64, intermediate: 192, layers: 3, heads: 4, kvHeads: 2, headDim: 16, ropeTheta: 10000, rmsNormEps: 1e-5, maxPositions: 2048 });
    checkConfig(j);
    expect(j.head_dim).toBe(16);
    expect(j.num_key_value_heads).toBe(2);
  });

  // The bundled weights are written by the training run; skip only before its first export.
  it.skipIf(!existsSync(resolve(modelTinyPath, 'config.json')))('bundled config.json and model.safetensors agree and are small', async () => {
    const j = JSON.parse(readFileSync(resolve(modelTinyPath, 'config.json'), 'utf8')) as Record<string, number>;
    checkConfig(j);
    const file = resolve(modelTinyPath, 'model.safetensors');
    expect(statSync(file).size).toBeLessThan(20 * 1024 * 1024);
    const { tensors } = await readTensors(readFileSync(file), file);
    expect(tensors['model.embed_tokens.weight'].shape).toEqual([j.vocab_size, j.hidden_size]);
    expect(tensors['model.norm.weight'].shape).toEqual([j.hidden_size]);
    for (let i = 0; i < j.num_hidden_layers; i++) {
      const p = `model.layers.${i}.`;
      expect(tensors[`${p}self_attn.q_proj.weight`].shape).toEqual([j.num_attention_heads * j.head_dim, j.hidden_size]);
      expect(tensors[`${p}self_attn.k_proj.weight`].shape).toEqual([j.num_key_value_heads * j.head_dim, j.hidden_size]);
      expect(tensors[`${p}self_attn.v_proj.weight`].shape).toEqual([j.num_key_value_heads * j.head_dim, j.hidden_size]);
      expect(tensors[`${p}self_attn.o_proj.weight`].shape).toEqual([j.hidden_size, j.num_attention_heads * j.head_dim]);
      expect(tensors[`${p}mlp.gate_proj.weight`].shape).toEqual([j.intermediate_size, j.hidden_size]);
      expect(tensors[`${p}mlp.up_proj.weight`].shape).toEqual([j.intermediate_size, j.hidden_size]);
      expect(tensors[`${p}mlp.down_proj.weight`].shape).toEqual([j.hidden_size, j.intermediate_size]);
      expect(tensors[`${p}input_layernorm.weight`].shape).toEqual([j.hidden_size]);
      expect(tensors[`${p}post_attention_layernorm.weight`].shape).toEqual([j.hidden_size]);
    }
    expect(Object.keys(tensors).length).toBe(2 + 9 * j.num_hidden_layers);
  });
});
