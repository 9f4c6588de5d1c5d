import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type * as tf from '@tensorflow/tfjs-core';
import { BackendUnavailableError, ModelError, TextStream, checkDecodingOptions, createRng, sampleToken, type KVKernels, type SamplingOptions } from '@kvfold/core';
import { parseModelConfig } from './model/config.js';
import type { DecoderOptions } from './model/decoder.js';
import { Checkpoint } from './model/safetensors.js';
import { loadWeights } from './model/weights.js';
import { Session, createModel, type Model, type SessionOptions } from './session.js';
import { loadTokenizer } from './tokenizer.js';

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
  const configPath = join(folder, 'config.json');
  let json: unknown;
  try {
    json = JSON.parse(await readFile(configPath, 'utf8'));
  } catch (cause) {
    throw new ModelError(`${configPath}: cannot read config: ${(cause as Error).message}`, { file: configPath }, cause);
  }
  const config = parseModelConfig(json, configPath);
  const tokenizer = await loadTokenizer(folder);
  const checkpoint = await Checkpoint.open(folder);
  let weights;
  try {
    weights = await loadWeights(checkpoint, config);
  } finally {
    await checkpoint.close();
  }
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
  return createModel({ config, weights, kernels, tokenizer, folder, ...(options.decoder ? { decoder: options.decoder } : {}) });
}

/** Token choice now lives in `@kvfold/core` (shared with the transformers.js adapter); re-exported here. */
export { sampleToken, type SamplingOptions } from '@kvfold/core';

/** What {@link GenerateOptions.onToken} receives for each generated token. */
export interface TokenEvent {
  /** The token id. */
  readonly token: number;
  /** 0 for the first generated token. */
  readonly index: number;
  /**
   * New text that became final with this token: held back while it may still be the start of a stop
   * string or an incomplete UTF-8 sequence, so concatenating every event's text gives the result's text.
   */
  readonly text: string;
}

/** Options of {@link generate}. */
export interface GenerateOptions extends SessionOptions {
  /** The model. */
  readonly model: Model;
  /** Prompt text (encoded with the model's tokenizer) or token ids. */
  readonly prompt: string | readonly number[];
  /** Most tokens to generate. Default 64. */
  readonly maxNewTokens?: number;
  /** 0 (default) is greedy decoding; above 0 samples from `softmax(logits / temperature)`. */
  readonly temperature?: number;
  /** Sample only among the `topK` most likely tokens (0 = no limit, the default). */
  readonly topK?: number;
  /** Nucleus sampling: the smallest set of tokens whose probability reaches `topP` (default 1 = off). */
  readonly topP?: number;
  /** Stop strings and/or stop token ids (besides the model's EOS). */
  readonly stop?: readonly (string | number)[];
  /** Stop at the tokenizer's / config's EOS ids. Default true. */
  readonly stopAtEos?: boolean;
  /** Called after each generated token (streaming). */
  readonly onToken?: (event: TokenEvent) => void;
}

/** Why generation ended. */
export type FinishReason = 'eos' | 'stop' | 'length';

/** What {@link generate} returns. */
export interface GenerateResult {
  /** Generated text (without the prompt, cut before a matched stop string). */
  readonly text: string;
  /** Generated token ids (including a final EOS or stop token). */
  readonly tokens: number[];
  /** Number of prompt tokens. */
  readonly promptTokens: number;
  /** Why generation ended. */
  readonly finishReason: FinishReason;
  /** Wall-clock timings. */
  readonly timings: {
    /** Prompt forward pass plus the policy's prefill, in ms. */
    readonly prefillMs: number;
    /** All decode steps (forward + policy step + sampling), in ms. */
    readonly decodeMs: number;
    /** Number of decode forward passes (the first token comes from the prefill logits). */
    readonly decodeSteps: number;
    /** `decodeSteps / decodeMs`, in tokens per second (0 when there was no decode step). */
    readonly decodeTokensPerSecond: number;
    /** Whole call, in ms. */
    readonly totalMs: number;
  };
  /** Cache statistics. */
  readonly cache: {
    /** Largest cache size seen (after any append or compression), in bytes. */
    readonly peakBytes: number;
    /** Cache size at the end, in bytes. */
    readonly finalBytes: number;
    /** Slots per layer at the end. */
    readonly lengths: number[];
    /** Resolved budget in slots (when a policy ran). */
    readonly budget?: number;
    /** True positions consumed (prompt + decoded tokens fed back). */
    readonly positions: number;
  };
}

function validate(o: GenerateOptions): { maxNewTokens: number; sampling: SamplingOptions } {
  const extra = typeof o.prompt !== 'string' && !Array.isArray(o.prompt) ? [{ path: '/prompt', rule: 'type', message: 'must be a string or an array of token ids', allowed: 'string | number[]' }] : [];
  return checkDecodingOptions(o, 'generate options', extra);
}

/**
 * Generate a continuation of `prompt`, compressing the KV cache with `policy` (if any): the policy's
 * `prefill` runs after the prompt with the budget resolved against the prompt length, and its `step`
 * after each decoded token. Greedy at temperature 0; seeded sampling otherwise. Stops at EOS, a stop
 * string or id, or `maxNewTokens`. Every tensor it creates is released before it returns.
 * @throws ConfigError for invalid options; ModelError for an empty prompt or ids outside the vocabulary;
 *   BudgetError for an invalid budget; any typed error a policy throws.
 */
export async function generate(options: GenerateOptions): Promise<GenerateResult> {
  const t0 = performance.now();
  const { maxNewTokens, sampling } = validate(options);
  const { model } = options;
  const promptIds = typeof options.prompt === 'string' ? model.tokenizer.encode(options.prompt) : [...options.prompt];
  if (promptIds.length === 0) throw new ModelError('the prompt encodes to no tokens; give at least one', { field: 'prompt' });
  const stopStrings = (options.stop ?? []).filter((s): s is string => typeof s === 'string');
  const stopIds = new Set((options.stop ?? []).filter((s): s is number => typeof s === 'number'));
  const eos = new Set(options.stopAtEos === false ? [] : [...model.tokenizer.eosTokenIds, ...model.config.eosTokenIds]);
  // Sampling gets its own stream so it never shares draws with the policies' RNG.
  const rng = createRng(options.seed ?? 0).fork(0x73616d70);
  const session = new Session(model, options);
  const tokens: number[] = [];
  const stream = new TextStream(stopStrings);
  let text = '';
  let finishReason: FinishReason = 'length';
  let prefillMs = 0;
  let decodeMs = 0;
  let decodeSteps = 0;
  try {
    let logits = await session.prefill(promptIds);
    prefillMs = performance.now() - t0;
    const tDecode = performance.now();
    while (tokens.length < maxNewTokens) {
      const token = sampleToken(logits, sampling, rng);
      tokens.push(token);
      if (eos.has(token)) finishReason = 'eos';
      else if (stopIds.has(token)) finishReason = 'stop';
      const ended = eos.has(token) || stopIds.has(token) || tokens.length >= maxNewTokens;
      const step = stream.push(model.tokenizer.decode(tokens), ended);
      text = step.text;
      if (step.stopped) finishReason = 'stop';
      options.onToken?.({ token, index: tokens.length - 1, text: step.delta });
      if (ended || step.stopped) break;
      logits = await session.decode(token);
      decodeSteps++;
    }
    decodeMs = decodeSteps > 0 ? performance.now() - tDecode : 0;
    const cache = session.cache;
    const budget = cache.budget;
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
        peakBytes: cache.peakBytes,
        finalBytes: cache.bytes(),
        lengths: cache.lengths(),
        ...(budget !== undefined ? { budget } : {}),
        positions: cache.position,
      },
    };
  } finally {
    session.dispose();
  }
}
