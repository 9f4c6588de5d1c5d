import { ModelError, checkDecodingOptions, runGeneration, splitTokens, type ConfigIssue, type DecodingOptions, type GenerationResult } from '@kvfold/core';
import type { TransformersTokenizerLike } from './model.js';
import { CompressedSession, type CompressedSessionOptions } from './session.js';

/** Options of {@link generateCompressed}: the session's settings and core's decoding settings. */
export interface GenerateCompressedOptions<T> extends CompressedSessionOptions<T>, DecodingOptions {
  /** The model's transformers.js tokenizer. */
  readonly tokenizer: TransformersTokenizerLike;
  /** Prompt text (encoded by the tokenizer, BOS included as it says) or token ids; batch size 1. */
  readonly prompt: string | readonly number[];
  /**
   * Text (or token ids) read and compressed before the prompt, as kvpress's pipeline does with a context
   * and a question: the policy's `prefill` runs after the context, with the budget resolved against the
   * context's length, and the prompt then goes through the policy's `step` like generated tokens, so the
   * policy never sees the prompt before it compresses (as `@kvfold/runtime`'s `generate`). Give both as
   * text or both as ids; text is encoded once as `context + prompt` (BOS added once).
   */
  readonly context?: string | readonly number[];
  /** Seed of the policy's RNG and of sampling. Default 0. */
  readonly seed?: number;
}

/** What {@link generateCompressed} returns: core's generation result, plus whether tensors crossed without copies. */
export interface GenerateCompressedResult extends GenerationResult {
  /** Number of context tokens (0 without a context). */
  readonly contextTokens: number;
  /** Cache statistics. */
  readonly cache: GenerationResult['cache'] & {
    /** Whether present tensors reached the backend without copies. */
    readonly zeroCopy: boolean;
  };
}

/** The context's and the prompt's token ids (no context: an empty one). */
function encodeInput<T>(o: GenerateCompressedOptions<T>): { context: number[]; rest: number[] } {
  if (typeof o.prompt !== 'string') return { context: o.context === undefined ? [] : [...(o.context as readonly number[])], rest: [...o.prompt] };
  if (o.context === undefined || o.context === '') return { context: [], rest: o.tokenizer.encode(o.prompt) };
  const context = o.context as string;
  return splitTokens(o.tokenizer, context + o.prompt, context.length);
}

/**
 * Generate with a transformers.js model while a kvfold policy compresses its KV cache: the prompt (or,
 * with a `context`, the context, the prompt being read after the compression) is prefilled, every
 * layer's `present` tensors are compressed by the policy on the chosen kvfold backend, then tokens are
 * decoded one at a time with true `position_ids` and an attention mask over the kept
 * slots, the policy's `step` running after each (with the `attention_sums.{i}` / `attention_last.{i}`
 * observations it declared). Greedy at temperature 0, seeded sampling otherwise (the same rule and RNG stream as
 * `@kvfold/runtime`'s `generate`). Batch size 1.
 * @throws ConfigError for invalid options; ModelError for a decoder kvfold cannot drive or an empty
 *   prompt; MissingObservationError (before any work) for a policy needing attention the decoder does not
 *   expose; BudgetError and any typed error the policy throws.
 */
export async function generateCompressed<T>(options: GenerateCompressedOptions<T>): Promise<GenerateCompressedResult> {
  const badPrompt = typeof options.prompt !== 'string' && !Array.isArray(options.prompt);
  const nested = Array.isArray(options.prompt) && options.prompt.some((x) => typeof x !== 'number');
  const extra: ConfigIssue[] = [
    ...(badPrompt ? [{ path: '/prompt', rule: 'type', message: 'must be a string or an array of token ids', allowed: 'string | number[]' }] : []),
    ...(nested ? [{ path: '/prompt', rule: 'type', message: 'must be one sequence: batch size 1 is supported, not arrays of prompts', allowed: 'string | number[]' }] : []),
  ];
  if (options.context !== undefined && (typeof options.context === 'string') !== (typeof options.prompt === 'string')) {
    extra.push({ path: '/context', rule: 'type', message: 'must be text when the prompt is text and token ids when the prompt is token ids', allowed: typeof options.prompt === 'string' ? 'string' : 'number[]' });
  }
  checkDecodingOptions(options, 'generateCompressed options', extra);
  const session = CompressedSession.create(options);
  const { context: contextIds, rest: promptIds } = encodeInput(options);
  if (promptIds.length === 0) throw new ModelError('the prompt encodes to no tokens; give at least one', { field: 'prompt' });
  try {
    const result = await runGeneration(
      {
        prefill: async () => (contextIds.length > 0 ? (await session.feed(contextIds), await session.feed(promptIds)) : await session.feed(promptIds)),
        decode: (token) => session.feed([token]),
        detokenize: (ids) => options.tokenizer.decode([...ids], { skip_special_tokens: true }),
        eosTokenIds: session.info.eosTokenIds,
      },
      promptIds.length,
      options,
      'generateCompressed options',
    );
    const budget = session.budget;
    return {
      ...result,
      contextTokens: contextIds.length,
      cache: { peakBytes: session.peakBytes, finalBytes: session.bytes(), lengths: session.lengths(), ...(budget !== undefined ? { budget } : {}), positions: session.position, zeroCopy: session.zeroCopy },
    };
  } finally {
    session.dispose();
  }
}
