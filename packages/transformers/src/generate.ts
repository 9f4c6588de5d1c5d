import { ModelError, TextStream, checkDecodingOptions, createRng, sampleToken, type DecodingOptions } from '@kvfold/core';
import type { TransformersTokenizerLike } from './model.js';
import { CompressedSession, type CompressedSessionOptions } from './session.js';

/** What {@link GenerateCompressedOptions.onToken} receives for each generated token. */
export interface CompressedTokenEvent {
  /** The token id. */
  readonly token: number;
  /** 0 for the first generated token. */
  readonly index: number;
  /** New text that became final with this token (held back while it may start a stop string). */
  readonly text: string;
}

/** Options of {@link generateCompressed}. */
export interface GenerateCompressedOptions<T> extends CompressedSessionOptions<T>, DecodingOptions {
  /** The model's transformers.js tokenizer. */
  readonly tokenizer: TransformersTokenizerLike;
  /** Prompt text (encoded by the tokenizer, BOS included as it says) or token ids; batch size 1. */
  readonly prompt: string | readonly number[];
  /** Stop at the model's EOS ids (config.json, generation_config.json). Default true. */
  readonly stopAtEos?: boolean;
  /** Called after each generated token (streaming). */
  readonly onToken?: (event: CompressedTokenEvent) => void;
}

/** Why generation ended. */
export type CompressedFinishReason = 'eos' | 'stop' | 'length';

/** What {@link generateCompressed} returns. */
export interface GenerateCompressedResult {
  /** Generated text (without the prompt, cut before a matched stop string). */
  readonly text: string;
  /** Generated token ids (including a final EOS or stop token). */
  readonly tokens: number[];
  /** Number of prompt tokens. */
  readonly promptTokens: number;
  /** Why generation ended. */
  readonly finishReason: CompressedFinishReason;
  /** Wall-clock timings. */
  readonly timings: {
    /** Prompt forward pass plus the policy's prefill, in ms. */
    readonly prefillMs: number;
    /** All decode steps (forward + policy step + sampling), in ms. */
    readonly decodeMs: number;
    /** Number of decode forward passes (the first token comes from the prefill logits). */
    readonly decodeSteps: number;
    /** `decodeSteps / decodeMs` in tokens per second (0 without a decode step). */
    readonly decodeTokensPerSecond: number;
    /** Whole call, in ms. */
    readonly totalMs: number;
  };
  /** Cache statistics. */
  readonly cache: {
    /** Largest cache size seen, in bytes. */
    readonly peakBytes: number;
    /** Cache size at the end, in bytes. */
    readonly finalBytes: number;
    /** Slots per layer at the end. */
    readonly lengths: number[];
    /** Resolved budget in slots (when a policy ran). */
    readonly budget?: number;
    /** True positions consumed. */
    readonly positions: number;
    /** Whether present tensors reached the backend without copies. */
    readonly zeroCopy: boolean;
  };
}

/**
 * Generate with a transformers.js model while a kvfold policy compresses its KV cache: the prompt is
 * prefilled, every layer's `present` tensors are compressed by the policy on the chosen kvfold backend,
 * then tokens are decoded one at a time with true `position_ids` and an attention mask over the kept
 * slots, the policy's `step` running after each (with the `attention_sums.{i}` / `attention_last.{i}`
 * observations it declared). Greedy at temperature 0, seeded sampling otherwise (the same rule and RNG stream as
 * `@kvfold/runtime`'s `generate`). Batch size 1.
 * @throws ConfigError for invalid options; ModelError for a decoder kvfold cannot drive or an empty
 *   prompt; MissingObservationError (before any work) for a policy needing attention the decoder does not
 *   expose; BudgetError and any typed error the policy throws.
 */
export async function generateCompressed<T>(options: GenerateCompressedOptions<T>): Promise<GenerateCompressedResult> {
  const t0 = performance.now();
  const badPrompt = typeof options.prompt !== 'string' && !Array.isArray(options.prompt);
  const nested = Array.isArray(options.prompt) && options.prompt.some((x) => typeof x !== 'number');
  const extra = [
    ...(badPrompt ? [{ path: '/prompt', rule: 'type', message: 'must be a string or an array of token ids', allowed: 'string | number[]' }] : []),
    ...(nested ? [{ path: '/prompt', rule: 'type', message: 'must be one sequence: batch size 1 is supported, not arrays of prompts', allowed: 'string | number[]' }] : []),
  ];
  const { maxNewTokens, sampling, seed } = checkDecodingOptions(options, 'generateCompressed options', extra);
  const session = CompressedSession.create(options);
  const promptIds = typeof options.prompt === 'string' ? options.tokenizer.encode(options.prompt) : [...options.prompt];
  if (promptIds.length === 0) throw new ModelError('the prompt encodes to no tokens; give at least one', { field: 'prompt' });
  const stopStrings = (options.stop ?? []).filter((s): s is string => typeof s === 'string');
  const stopIds = new Set((options.stop ?? []).filter((s): s is number => typeof s === 'number'));
  const eos = new Set(options.stopAtEos === false ? [] : session.info.eosTokenIds);
  // Sampling gets its own stream (the runtime's fork constant), never sharing draws with the policies' RNG.
  const rng = createRng(seed).fork(0x73616d70);
  const stream = new TextStream(stopStrings);
  const tokens: number[] = [];
  let text = '';
  let finishReason: CompressedFinishReason = 'length';
  let decodeMs = 0;
  let decodeSteps = 0;
  try {
    let logits = await session.feed(promptIds);
    const prefillMs = performance.now() - t0;
    const tDecode = performance.now();
    while (tokens.length < maxNewTokens) {
      const token = sampleToken(logits, sampling, rng);
      tokens.push(token);
      if (eos.has(token)) finishReason = 'eos';
      else if (stopIds.has(token)) finishReason = 'stop';
      const ended = eos.has(token) || stopIds.has(token) || tokens.length >= maxNewTokens;
      const step = stream.push(options.tokenizer.decode(tokens, { skip_special_tokens: true }), ended);
      text = step.text;
      if (step.stopped) finishReason = 'stop';
      options.onToken?.({ token, index: tokens.length - 1, text: step.delta });
      if (ended || step.stopped) break;
      logits = await session.feed([token]);
      decodeSteps++;
    }
    decodeMs = decodeSteps > 0 ? performance.now() - tDecode : 0;
    const budget = session.budget;
    return {
      text,
      tokens,
      promptTokens: promptIds.length,
      finishReason,
      timings: {
        prefillMs,
        decodeMs,
        decodeSteps,
        decodeTokensPerSecond: decodeSteps > 0 && decodeMs > 0 ? (decodeSteps * 1000) / decodeMs : 0,
        totalMs: performance.now() - t0,
      },
      cache: {
        peakBytes: session.peakBytes,
        finalBytes: session.bytes(),
        lengths: session.lengths(),
        ...(budget !== undefined ? { budget } : {}),
        positions: session.position,
        zeroCopy: session.zeroCopy,
      },
    };
  } finally {
    session.dispose();
  }
}
