import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseModelConfig, randomWeights, writeCheckpoint } from '@kvfold/runtime';
import { tinyLlamaConfig } from '@kvfold/testkit';

/**
 * Write a tiny random Llama checkpoint (byte vocabulary + 2 special ids, 2 layers, GQA 4/2 heads, head
 * dim 8) to a fresh temp folder: a "user's model folder" the tests control, independent of the
 * embedded model that is being retrained.
 */
export async function tinyModelFolder(seed = 7): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'kvfold-bench-model-'));
  const config = parseModelConfig(tinyLlamaConfig({ vocab_size: 258, tie_word_embeddings: true, max_position_embeddings: 1024, eos_token_id: 257 }));
  await writeCheckpoint(dir, config, randomWeights(config, seed, 0.5));
  return dir;
}

/** A fresh temp folder for run outputs. */
export function tempDir(prefix = 'kvfold-bench-run-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}
