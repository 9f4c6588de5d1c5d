import type { KVFoldError } from '@kvfold/core';

/**
 * A tiny Llama `config.json` (2 layers, hidden 32, 4 query heads over 2 kv heads, head dim 8, vocabulary
 * 64, bytes tokenizer) for tests that build random models; `overrides` replaces or adds any field.
 */
export function tinyLlamaConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
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

/**
 * The error `f` throws or rejects with (a typed kvfold error in the tests that use it).
 * @throws Error when `f` neither throws nor rejects.
 */
export async function thrown<E = KVFoldError>(f: () => unknown): Promise<E> {
  try {
    await f();
  } catch (e) {
    return e as E;
  }
  throw new Error('expected an error, none was thrown');
}
