import { parseModelConfig, type LlamaConfig } from '../../src/index.js';

/** A tiny HF config document: 2 layers, hidden 32, 4 query heads over 2 kv heads, vocab 64. */
export function tinyConfigJson(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_type: 'llama',
    vocab_size: 64,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    rope_theta: 10000,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: false,
    max_position_embeddings: 128,
    eos_token_id: 63,
    kvfold: { tokenizer: 'bytes' },
    ...overrides,
  };
}

/** {@link tinyConfigJson} parsed. */
export function tinyConfig(overrides: Record<string, unknown> = {}): LlamaConfig {
  return parseModelConfig(tinyConfigJson(overrides));
}
