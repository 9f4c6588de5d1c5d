import { decodeSchema, shareSchema, type DecodeMode, type JsonSchema } from '@kvfold/core';

/** Options of the `h2o` policy. */
export interface H2OOptions {
  /**
   * Most recent slots always kept: a share of the budget when in `[0, 1)`, a slot count when an
   * integer `>= 1` (clamped to the budget). The rest of the budget goes to heavy hitters. Default 0.5:
   * the official H2O scripts use `heavy_ratio = recent_ratio` (0.1 / 0.1 of the prompt).
   */
  readonly recent: number;
  /**
   * Rank by the accumulated attention divided by the number of queries that could see each slot
   * (kvpress `ObservedAttentionPress`), instead of the raw sum of the official H2O code. The stored
   * score stays the raw sum either way. Default false.
   */
  readonly normalize: boolean;
  /** Decode steps: `evict` (default, H2O's real-drop cache stays at the budget), `keep` (prefill only) or `{ every: n }`. */
  readonly decode: DecodeMode;
}

/** JSON Schema of {@link H2OOptions}. */
export const h2oSchema: JsonSchema = {
  type: 'object',
  properties: {
    recent: shareSchema('Most recent slots always kept; the rest are heavy hitters. Official H2O splits heavy = recent', 0.5),
    normalize: {
      type: 'boolean',
      default: false,
      description: 'Rank by accumulated attention / number of queries that could see the slot (kvpress ObservedAttentionPress); false ranks by the raw sum like the official H2O code.',
    },
    decode: decodeSchema('evict'),
  },
  additionalProperties: false,
};
