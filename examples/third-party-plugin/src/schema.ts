import { decodeSchema, type DecodeMode, type JsonSchema } from '@kvfold/core';

/** Options of the `tova` policy (JSON Schema: {@link tovaSchema}). */
export interface TovaOptions {
  /**
   * `layer` (default, the paper's rule): one decision for the whole layer, ranking each token by the
   * current query's attention averaged over the kv heads, so every head keeps the same tokens.
   * `head`: each kv head ranks by its own attention (the per-head variant the paper compares against).
   */
  readonly scope: 'layer' | 'head';
  /** Decode steps: `evict` (default, TOVA drops a token at every step over budget), `keep` (prefill only) or `{ every: n }`. */
  readonly decode: DecodeMode;
}

/**
 * JSON Schema of {@link TovaOptions}. kvfold composes it into the configuration schema under
 * `policy.options` when `policy.name` is `tova`, so a config is checked before anything runs.
 */
export const tovaSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    scope: {
      enum: ['layer', 'head'],
      default: 'layer',
      description: 'layer: one decision per layer from the last query\'s attention averaged over kv heads (TOVA); head: each kv head ranks by its own attention.',
    },
    decode: decodeSchema('evict'),
  },
};
