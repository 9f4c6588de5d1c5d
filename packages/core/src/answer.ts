import type { Budget } from './budget.js';
import type { GenerationResult } from './decoding.js';
import type { KVCachePolicy } from './policy.js';

/**
 * The one-call contract "compress a context, then answer a question": what `@kvfold/pipeline`'s
 * `answer()` asks of a runtime. It lives in core so each runtime (`@kvfold/runtime` on tfjs,
 * `@kvfold/transformers` on transformers.js) implements it without depending on the pipeline, and the
 * pipeline drives any of them without depending on their engines.
 * @module
 */

/** What an {@link AnswerEngine} is asked to do: everything `answer()` resolved from its options. */
export interface AnswerRequest {
  /** Text read and compressed first. */
  readonly context: string;
  /** Text read after the compression; the answer continues it. */
  readonly question: string;
  /** The cache policy (already created and validated). */
  readonly policy: KVCachePolicy;
  /** The budget, resolved by the runtime against the context's length. */
  readonly budget: Budget;
  /** Most tokens to generate. */
  readonly maxNewTokens: number;
  /** Strings that end the answer (besides the model's end-of-sequence token). */
  readonly stop: readonly string[];
  /** Seed of the policy's random choices. */
  readonly seed: number;
}

/** What an {@link AnswerEngine} returns. */
export interface EngineAnswer {
  /** Generated text, cut before a stop string. */
  readonly text: string;
  /** Tokens of the context. */
  readonly contextTokens: number;
  /** Tokens of the question. */
  readonly questionTokens: number;
  /** Tokens generated. */
  readonly generatedTokens: number;
  /** Cache slots per layer when the answer was done. */
  readonly keptSlots: readonly number[];
  /** Cache size at the end, in bytes. */
  readonly cacheBytes: number;
}

/**
 * A runtime that can compress a context and answer a question about it: `runtimeEngine(model)` from
 * `@kvfold/pipeline` for `@kvfold/runtime` models, `transformersEngine(...)` from `@kvfold/transformers`
 * for transformers.js models, or your own.
 */
export interface AnswerEngine {
  /** Shown in results and messages. */
  readonly name: string;
  /** Read the context, let the policy compress it, read the question, then decode greedily. */
  answer(request: AnswerRequest): Promise<EngineAnswer>;
}

/**
 * The {@link EngineAnswer} of a generation run with a context and the question as its prompt (what
 * `@kvfold/runtime`'s `generate` and `@kvfold/transformers`' `generateCompressed` return).
 */
export function engineAnswer(result: GenerationResult & { readonly contextTokens: number }): EngineAnswer {
  return {
    text: result.text,
    contextTokens: result.contextTokens,
    questionTokens: result.promptTokens,
    generatedTokens: result.tokens.length,
    keptSlots: result.cache.lengths,
    cacheBytes: result.cache.finalBytes,
  };
}

/** A prompt's tokens split into the part that is compressed and the rest. */
export interface SplitTokens {
  /** Tokens prefilled and compressed. */
  readonly context: number[];
  /** Tokens fed after the compression. */
  readonly rest: number[];
}

/**
 * Tokenize a prompt split at a character offset into the part the policy compresses and the rest. Both
 * come from one encoding of the whole prompt (tokenizers may merge across the split, and a BOS is added
 * once); the context is the longest prefix shared with the encoding of the context text alone.
 * @param tokenizer - Anything with `encode(text)` returning token ids (special tokens added as the model expects).
 */
export function splitTokens(tokenizer: { encode(text: string): readonly number[] }, prompt: string, at: number): SplitTokens {
  const all = tokenizer.encode(prompt);
  const head = tokenizer.encode(prompt.slice(0, at));
  let n = 0;
  while (n < all.length && n < head.length && all[n] === head[n]) n++;
  return { context: all.slice(0, n), rest: all.slice(n) };
}
