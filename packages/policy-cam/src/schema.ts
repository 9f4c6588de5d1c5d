import { decodeSchema, shareSchema, type DecodeMode, type JsonSchema } from '@kvfold/core';
import type { GateMode } from './plan.js';

/** Options of the `cam` policy. */
export interface CaMOptions {
  /** Which slots are evicted: `h2o` (recent window + heavy hitters, default) or `window` (StreamingLLM sink + recent, as the official CaM code). */
  readonly evict: 'h2o' | 'window';
  /** With `evict: 'h2o'`: recent slots kept, a share of the budget in `[0, 1)` or a count `>= 1`. Default 0.5 (H2O's heavy = recent split). */
  readonly recent: number;
  /** With `evict: 'window'`: leading sink slots kept (StreamingLLM). Default 4. */
  readonly sink: number;
  /** m: how many kept successors receive an evicted value. Default 32 (kvpress `CAMPress`, CaM's masked-simulation code); the official streaming code uses 16. */
  readonly mergeBudget: number;
  /** `bernoulli` (the paper's Eq. 14, default) or `expected` (weight = merge probability; a variance-free variant, not in the paper). */
  readonly gate: GateMode;
  /** Decode steps: `evict` (default, the official streaming cache stays at the budget), `keep` (prefill only) or `{ every: n }`. */
  readonly decode: DecodeMode;
}

/** JSON Schema of {@link CaMOptions}. */
export const camSchema: JsonSchema = {
  type: 'object',
  properties: {
    evict: {
      enum: ['h2o', 'window'],
      default: 'h2o',
      description: 'Eviction rule: h2o (recent window + top accumulated attention) or window (StreamingLLM sink + recent, the official CaM base).',
    },
    recent: shareSchema("With evict 'h2o': most recent slots kept; the rest are heavy hitters", 0.5),
    sink: {
      type: 'integer',
      minimum: 0,
      maximum: 1_000_000,
      default: 4,
      description: "With evict 'window': leading sink slots always kept (StreamingLLM uses 4); clamped to budget - 1.",
    },
    mergeBudget: {
      type: 'integer',
      minimum: 1,
      maximum: 1_000_000,
      default: 32,
      description: 'm: number of kept successors an evicted value is spread over (kvpress CAMPress 32; official CaM streaming code 16).',
    },
    gate: {
      enum: ['bernoulli', 'expected'],
      default: 'bernoulli',
      description: 'bernoulli: M ~ Bernoulli(p) as in CaM Eq. 14; expected: weight p itself (deterministic, variance-free variant, not from the paper).',
    },
    decode: decodeSchema('evict'),
  },
  additionalProperties: false,
};
