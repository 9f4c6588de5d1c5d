import type * as tf from '@tensorflow/tfjs-core';
import { BackendUnavailableError, ModelError, checkDecodingOptions, runGeneration, type ConfigIssue, type DecodingOptions, type GenerationResult, type KVKernels, type SamplingOptions } from '@kvfold/core';
import type { DecoderOptions } from './model/decoder.js';
import { loadCheckpoint } from './model/folder.js';
import { Session, createModel, type Model, type SessionOptions } from './session.js';
import { loadTokenizer, splitTokens, type TextTokenizer } from './tokenizer.js';

/** tfjs engines `@kvfold/backend-tfjs` can run on. */
export type TfjsEngine = 'auto' | 'wasm' | 'cpu' | 'tensorflow';

/** Options of {@link loadModel}. */
export interface LoadModelOptions {
  /** tfjs engine for `createTfjsKernels` (ignored when `kernels` is given). Default `auto`. */
  readonly engine?: TfjsEngine;
  /** Kernels to use instead of creating tfjs ones (their tfjs backend must already be active). */
  readonly kernels?: KVKernels<tf.Tensor>;
  /** Decoder options (attention query chunk). */
  readonly decoder?: DecoderOptions;
}

/**
 * Load a model folder: `config.json` (Llama, Mistral or Qwen2), `model.safetensors` or a sharded
 * `model.safetensors.index.json`, and the tokenizer (`tokenizer.json`, or bytes when config.json says
 * `"kvfold": {"tokenizer": "bytes"}`). Creates the tfjs kernels (which select the tfjs engine) before
 * uploading weights, so the weights live on the engine the caches use.
 * @throws ConfigError for an invalid config.json; ModelError naming the file or tensor for a missing,
 *   truncated or mis-shaped checkpoint; BackendUnavailableError when the engine cannot start.
 */
export async function loadModel(folder: string, options: LoadModelOptions = {}): Promise<Model> {
  let tokenizer: TextTokenizer | undefined;
  // The tokenizer is read before the weights, so a broken one fails before the large read.
  const { config, weights } = await loadCheckpoint(folder, async () => {
    tokenizer = await loadTokenizer(folder);
  });
  let kernels = options.kernels;
  if (!kernels) {
    let mod: typeof import('@kvfold/backend-tfjs');
    try {
      mod = await import('@kvfold/backend-tfjs');
    } catch (cause) {
      throw new BackendUnavailableError(`@kvfold/backend-tfjs could not be imported (${(cause as Error).message}); install it or pass loadModel(folder, { kernels })`, { backend: 'tfjs' }, cause);
    }
    kernels = (await mod.createTfjsKernels({ engine: options.engine ?? 'auto' })) as KVKernels<tf.Tensor>;
  }
  return createModel({ config, weights, kernels, tokenizer: tokenizer!, folder, ...(options.decoder ? { decoder: options.decoder } : {}) });
}

/** Token choice now lives in `@kvfold/core` (shared with the transformers.js adapter); re-exported here. */
export { sampleToken, type SamplingOptions } from '@kvfold/core';

/** Streaming events, finish reasons and results are shared with the transformers.js adapter (`@kvfold/core`). */
export type { FinishReason, TokenEvent } from '@kvfold/core';

/** Options of {@link generate}: the session's policy settings and core's decoding settings. */
export interface GenerateOptions extends SessionOptions, DecodingOptions {
  /** The model. */
  readonly model: Model;
  /** Prompt text (encoded with the model's tokenizer) or token ids. */
  readonly prompt: string | readonly number[];
  /** Seed of the policy's RNG and of sampling. Default 0. */
  readonly seed?: number;
  /**
   * Text (or token ids) read and compressed before the prompt, as kvpress's pipeline does with a context
   * and a question: the policy's `prefill` runs after the context, with the budget resolved against the
   * context's length, and the prompt then goes through the policy's decode `step` like generated tokens,
   * so the policy never sees the prompt before it compresses. Give both as text or both as ids; text is
   * encoded once as `context + prompt` (a BOS is added once, and merges across the seam are kept).
   */
  readonly context?: string | readonly number[];
}

/** What {@link generate} returns. */
export interface GenerateResult extends GenerationResult {
  /** Number of context tokens (0 without a context). */
  readonly contextTokens: number;
}

function validate(o: GenerateOptions): { maxNewTokens: number; sampling: SamplingOptions } {
  const extra: ConfigIssue[] = [];
  if (typeof o.prompt !== 'string' && !Array.isArray(o.prompt)) extra.push({ path: '/prompt', rule: 'type', message: 'must be a string or an array of token ids', allowed: 'string | number[]' });
  if (o.context !== undefined && (typeof o.context === 'string') !== (typeof o.prompt === 'string')) {
    extra.push({ path: '/context', rule: 'type', message: 'must be text when the prompt is text and token ids when the prompt is token ids', allowed: typeof o.prompt === 'string' ? 'string' : 'number[]' });
  }
  return checkDecodingOptions(o, 'generate options', extra);
}

/** The context's and the prompt's token ids (no context: an empty one). */
function encodeInput(model: Model, o: GenerateOptions): { context: number[]; rest: number[] } {
  if (typeof o.prompt !== 'string') return { context: o.context === undefined ? [] : [...(o.context as readonly number[])], rest: [...o.prompt] };
  if (o.context === undefined || o.context === '') return { context: [], rest: model.tokenizer.encode(o.prompt) };
  const context = o.context as string;
  return splitTokens(model.tokenizer, context + o.prompt, context.length);
}

/**
 * Generate a continuation of `prompt`, compressing the KV cache with `policy` (if any): the policy's
 * `prefill` runs after the prompt with the budget resolved against the prompt length, and its `step`
 * after each decoded token (with a `context`, the prefill runs after the context and the prompt is read
 * after the compression). Greedy at temperature 0; seeded sampling otherwise. Stops at EOS, a stop
 * string or id, or `maxNewTokens`. Every tensor it creates is released before it returns.
 * @throws ConfigError for invalid options; ModelError for an empty prompt or ids outside the vocabulary;
 *   BudgetError for an invalid budget; any typed error a policy throws.
 */
export async function generate(options: GenerateOptions): Promise<GenerateResult> {
  validate(options);
  const { model } = options;
  const { context: contextIds, rest: promptIds } = encodeInput(model, options);
  if (promptIds.length === 0) throw new ModelError('the prompt encodes to no tokens; give at least one', { field: 'prompt' });
  const session = new Session(model, options);
  try {
    const result = await runGeneration(
      {
        prefill: async () => (contextIds.length > 0 ? (await session.prefill(contextIds), await session.feed(promptIds)) : await session.prefill(promptIds)),
        decode: (token) => session.decode(token),
        detokenize: (ids) => model.tokenizer.decode(ids),
        eosTokenIds: [...model.tokenizer.eosTokenIds, ...model.config.eosTokenIds],
      },
      promptIds.length,
      options,
    );
    const cache = session.cache;
    const budget = cache.budget;
    return {
      ...result,
      contextTokens: contextIds.length,
      cache: { peakBytes: cache.peakBytes, finalBytes: cache.bytes(), lengths: cache.lengths(), ...(budget !== undefined ? { budget } : {}), positions: cache.position },
    };
  } finally {
    session.dispose();
  }
}
