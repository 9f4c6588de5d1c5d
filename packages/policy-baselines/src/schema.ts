import { decodeSchema, shareSchema, type DecodeMode, type JsonSchema } from '@kvfold/core';

/** Options of the `full` policy: it has none. */
export type FullOptions = Record<string, never>;

/** JSON Schema of {@link FullOptions}: an empty object. */
export const fullSchema: JsonSchema = {
  type: 'object',
  description: 'The full cache takes no options.',
  properties: {},
  additionalProperties: false,
};

/** Options of the `window` policy (StreamingLLM). */
export interface WindowOptions {
  /**
   * Number of leading slots (attention sinks) always kept. Default 4, as StreamingLLM (Xiao et al.,
   * ICLR 2024) and kvpress `StreamingLLMPress` (`n_sink=4`). Clamped to `budget - 1` so the newest
   * token always fits.
   */
  readonly sink: number;
  /** Decode steps: `evict` (default, StreamingLLM's rolling window), `keep` (prefill only) or `{ every: n }`. */
  readonly decode: DecodeMode;
}

/** JSON Schema of {@link WindowOptions}. */
export const windowSchema: JsonSchema = {
  type: 'object',
  properties: {
    sink: {
      type: 'integer',
      minimum: 0,
      maximum: 1_000_000,
      default: 4,
      description: 'Leading slots (attention sinks) always kept; StreamingLLM uses 4. Clamped to budget - 1.',
    },
    decode: decodeSchema('evict'),
  },
  additionalProperties: false,
};

/** Options of the `random` policy. */
export interface RandomOptions {
  /**
   * Most recent slots always kept: a share of the budget when in `[0, 1)`, a slot count when an integer
   * `>= 1`. Default 0.5, the same split as the `h2o` policy, so `random` vs `h2o` isolates the value of
   * the heavy-hitter scores (H2O's own "random" ablation).
   */
  readonly recent: number;
  /** Decode steps: `evict` (default), `keep` (prefill only) or `{ every: n }`. */
  readonly decode: DecodeMode;
}

/** JSON Schema of {@link RandomOptions}. */
export const randomSchema: JsonSchema = {
  type: 'object',
  properties: {
    recent: shareSchema('Most recent slots always kept', 0.5),
    decode: decodeSchema('evict'),
  },
  additionalProperties: false,
};

/** One policy of a `chain`. */
export interface ChainStep {
  /** Registry name of the policy. */
  readonly name: string;
  /** Its options, validated against its own schema. */
  readonly options?: Record<string, unknown>;
}

/** Options of the `chain` policy. */
export interface ChainOptions {
  /** The policies applied in turn. */
  readonly policies: readonly ChainStep[];
}

/** JSON Schema of {@link ChainOptions}. */
export const chainSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['policies'],
  properties: {
    policies: {
      type: 'array',
      minItems: 1,
      maxItems: 16,
      description: 'Policies applied in turn to the same layer and budget; only the first receives the observation, so the others must need none.',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        properties: { name: { type: 'string', minLength: 1 }, options: { type: 'object' } },
      },
    },
  },
};
