import { tinyLlamaConfig } from '@kvfold/testkit';
import { parseModelConfig, type LlamaConfig } from '../../src/index.js';

/** A tiny HF config document: 2 layers, hidden 32, 4 query heads over 2 kv heads, vocab 64 (testkit's). */
export const tinyConfigJson = tinyLlamaConfig;

/** {@link tinyConfigJson} parsed. */
export function tinyConfig(overrides: Record<string, unknown> = {}): LlamaConfig {
  return parseModelConfig(tinyConfigJson(overrides));
}
