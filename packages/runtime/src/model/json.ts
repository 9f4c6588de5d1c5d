import { ConfigError, ModelError, NotFoundError, readJsonFile } from '@kvfold/core';

/** Largest JSON files read from a model folder, checked before they are read. */
export const MODEL_JSON_LIMITS = {
  /** config.json. */
  config: 1 << 20,
  /** model.safetensors.index.json. */
  index: 64 << 20,
  /** tokenizer.json (the largest published ones are about 35 MB). */
  tokenizer: 256 << 20,
} as const;

/**
 * Read a JSON file of a model folder, bounded in size.
 * @throws ModelError naming the file (`reason`: `missing`, `json` with the line and column, or `size`).
 */
export function readModelJson(path: string, maxBytes: number): unknown {
  try {
    return readJsonFile(path, { what: 'model file', maxBytes });
  } catch (e) {
    if (e instanceof NotFoundError) throw new ModelError(`${path}: not found`, { file: path, reason: 'missing' }, e);
    const issue = e instanceof ConfigError ? e.issues[0] : undefined;
    const reason = issue?.rule === 'maxBytes' ? 'size' : 'json';
    throw new ModelError(`${path}: cannot read JSON: ${issue?.message ?? (e as Error).message}`, { file: path, reason, ...(issue?.allowed && typeof issue.allowed === 'object' ? (issue.allowed as object) : {}) }, e);
  }
}
