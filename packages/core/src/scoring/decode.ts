import type { JsonSchema } from '../policy.js';

/**
 * What an evicting policy does during decoding, shared by every {@link ScorerPolicy}:
 * - `evict`: a decode step that leaves the cache above the budget evicts back to it (the cache never
 *   holds more than the budget);
 * - `keep`: compress at prefill only; decode steps keep every new token (the cache grows by the tokens
 *   decoded), as SnapKV, PyramidKV and the kvpress presses do;
 * - `{ every: n }`: evict back to the budget once the cache holds `n` or more slots above it (`{ every: 1 }`
 *   is `evict`), so eviction runs once per `n` decoded tokens (kvpress's DecodingPress interval).
 *
 * Score state (accumulated attention) is updated at every step whatever the mode.
 */
export type DecodeMode = 'evict' | 'keep' | DecodeInterval;

/** The interval form of {@link DecodeMode}. */
export interface DecodeInterval {
  /** Evict back to the budget once this many slots (or more) are above it; at least 1. */
  readonly every: number;
}

/** JSON Schema of the shared `decode` option; `fallback` is the policy's default. */
export function decodeSchema(fallback: 'evict' | 'keep'): JsonSchema {
  return {
    default: fallback,
    description:
      'Decode steps: "evict" keeps the cache at the budget after every step; "keep" compresses at prefill only (new tokens stay); {"every": n} evicts back to the budget once n or more slots are above it.',
    oneOf: [
      { enum: ['evict', 'keep'] },
      { type: 'object', additionalProperties: false, required: ['every'], properties: { every: { type: 'integer', minimum: 1, maximum: 1_000_000 } } },
    ],
  };
}

/** Whether a decode step that left `length` slots evicts under `mode` and `budget`. */
export function evictsAtStep(mode: DecodeMode, length: number, budget: number): boolean {
  if (mode === 'keep') return false;
  const every = mode === 'evict' ? 1 : mode.every;
  return length - budget >= every;
}
