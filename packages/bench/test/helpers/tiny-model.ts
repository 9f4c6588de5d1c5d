import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseModelConfig, randomWeights, writeCheckpoint } from '@kvfold/runtime';

/**
 * Write a tiny random Llama checkpoint (byte vocabulary + 2 special ids, 2 layers, GQA 4/2 heads, head
 * dim 8) to a fresh temp folder: a "user's model folder" the tests control, independent of the
 * embedded model that is being retrained.
 */
export async function tinyModelFolder(seed = 7): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'kvfold-bench-model-'));
  const config = parseModelConfig({
    model_type: 'llama',
    vocab_size: 258,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    rope_theta: 10000,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: true,
    max_position_embeddings: 1024,
    eos_token_id: 257,
    kvfold: { tokenizer: 'bytes' },
  });
  await writeCheckpoint(dir, config, randomWeights(config, seed, 0.5));
  return dir;
}

/** A fresh temp folder for run outputs. */
export function tempDir(prefix = 'kvfold-bench-run-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}
