import { decodeSchema, type DecodeMode, type JsonSchema } from '@kvfold/core';

/** Options of the `knorm` policy. */
export interface KnormOptions {
  /** Decode steps: `keep` (default, kvpress's presses compress the prompt only), `evict` or `{ every: n }`. */
  readonly decode: DecodeMode;
}

/** JSON Schema of {@link KnormOptions}. */
export const knormSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: { decode: decodeSchema('keep') },
};
