import { join } from 'node:path';
import { parseModelConfig, type LlamaConfig } from './config.js';
import { MODEL_JSON_LIMITS, readModelJson } from './json.js';
import { Checkpoint } from './safetensors.js';
import { loadWeights, type LlamaWeights } from './weights.js';

/** A checkpoint folder read into host memory: see {@link loadCheckpoint}. */
export interface LoadedCheckpoint {
  /** The parsed configuration. */
  readonly config: LlamaConfig;
  /** `config.json` as written (for tools that copy or extend it). */
  readonly json: Readonly<Record<string, unknown>>;
  /** Every weight, in host memory. */
  readonly weights: LlamaWeights;
}

/**
 * Read a checkpoint folder: `config.json` (bounded in size, parsed and checked before any weight is read)
 * then `model.safetensors` or its sharded index. `onConfig` runs between the two with the parsed
 * configuration (progress, or reading the tokenizer before the weights).
 * @throws ConfigError for an invalid config.json; ModelError naming the file or tensor for a missing,
 *   oversized, truncated or mis-shaped checkpoint.
 */
export async function loadCheckpoint(folder: string, onConfig?: (config: LlamaConfig) => void | Promise<void>): Promise<LoadedCheckpoint> {
  const configPath = join(folder, 'config.json');
  const json = readModelJson(configPath, MODEL_JSON_LIMITS.config);
  const config = parseModelConfig(json, configPath);
  await onConfig?.(config);
  const checkpoint = await Checkpoint.open(folder);
  try {
    return { config, json: json as Record<string, unknown>, weights: await loadWeights(checkpoint, config) };
  } finally {
    await checkpoint.close();
  }
}
