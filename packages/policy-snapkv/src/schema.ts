import { decodeSchema, type DecodeMode, type JsonSchema } from '@kvfold/core';

/** Options of the `snapkv` policy. */
export interface SnapKVOptions {
  /** Observation window: the last prompt queries whose attention scores the prefix, all kept. Default 64 (kvpress, KVCache-Factory). */
  readonly window: number;
  /** Width of the average pooling over neighbouring slots' scores (odd; 1 = none). Default 5 (kvpress). */
  readonly kernelSize: number;
  /** Decode steps: `keep` (default, the paper compresses the prompt only), `evict` or `{ every: n }`. */
  readonly decode: DecodeMode;
}

/** Options of the `pyramidkv` policy: SnapKV's, plus the pyramid's steepness. */
export interface PyramidKVOptions extends SnapKVOptions {
  /** Ratio of the bottom layer's budget to the top layer's part (`min = budget / beta`); larger is steeper. Default 20 (paper, kvpress). */
  readonly beta: number;
}

const snapkvProperties = {
  window: { type: 'integer', minimum: 1, maximum: 1_000_000, default: 64, description: 'Observation window: the last prompt queries that score the prefix; the window itself is always kept.' },
  kernelSize: { enum: [1, 3, 5, 7, 9, 11, 13, 15], default: 5, description: 'Width of the average pooling of the scores over neighbouring slots (1 = no pooling).' },
  decode: decodeSchema('keep'),
} as const;

/** JSON Schema of {@link SnapKVOptions}. */
export const snapkvSchema: JsonSchema = { type: 'object', additionalProperties: false, properties: snapkvProperties };

/** JSON Schema of {@link PyramidKVOptions}. */
export const pyramidkvSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...snapkvProperties,
    beta: { type: 'number', minimum: 1, maximum: 1_000_000, default: 20, description: 'Pyramid steepness: the top layer keeps budget / beta beyond its window, the bottom one 2 budget - that.' },
  },
};
