import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type * as tf from '@tensorflow/tfjs-core';
import { BackendUnavailableError, ConfigError, ModelError, createRng, type ConfigIssue, type KVKernels, type Rng } from '@kvfold/core';
import { parseModelConfig } from './model/config.js';
import type { DecoderOptions } from './model/decoder.js';
import { Checkpoint } from './model/safetensors.js';
import { loadWeights } from './model/weights.js';
import { Session, createModel, type Model, type SessionOptions } from './session.js';
import { loadTokenizer, splitTokens } from './tokenizer.js';

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
  /**
   * Text (or token ids) read and compressed before the prompt, as kvpress's pipeline does with a context
   * and a question: the policy's `prefill` runs after the context, with the budget resolved against the
   * context's length, and the prompt then goes through the policy's decode `step` like generated tokens,
   * so the policy never sees the prompt before it compresses. Give both as text or both as ids; text is
   * encoded once as `context + prompt` (a BOS is added once, and merges across the seam are kept).
   */
  readonly context?: string | readonly number[];
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
  /** Number of context tokens (0 without a context). */
  readonly contextTokens: number;
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

/** Sampling settings of {@link sampleToken}. */
export interface SamplingOptions {
  /** 0 = greedy. */
  readonly temperature: number;
  /** 0 = no limit. */
  readonly topK: number;
  /** 1 = off. */
  readonly topP: number;
}

/**
 * Pick the next token: the arg-max at temperature 0 (ties to the lower id), else a draw from the
 * temperature-scaled softmax restricted to the top-k and the top-p nucleus.
 */
export function sampleToken(logits: Float32Array, options: SamplingOptions, rng: Rng): number {
  if (options.temperature === 0) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
    return best;
  }
  const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b);
  const k = options.topK > 0 ? Math.min(options.topK, order.length) : order.length;
  const cand = order.slice(0, k);
  const max = logits[cand[0]!]!;
  const w = cand.map((i) => Math.exp((logits[i]! - max) / options.temperature));
  const z = w.reduce((a, b) => a + b, 0);
  let keep = cand.length;
  if (options.topP < 1) {
    let acc = 0;
    for (let j = 0; j < cand.length; j++) {
      acc += w[j]! / z;
      if (acc >= options.topP) {
        keep = j + 1;
        break;
      }
    }
  }
  const zk = w.slice(0, keep).reduce((a, b) => a + b, 0);
  let u = rng.next() * zk;
  for (let j = 0; j < keep; j++) {
    u -= w[j]!;
    if (u < 0) return cand[j]!;
  }
  return cand[keep - 1]!;
}

function validate(o: GenerateOptions): { maxNewTokens: number; sampling: SamplingOptions } {
  const issues: ConfigIssue[] = [];
  const maxNewTokens = o.maxNewTokens ?? 64;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) issues.push({ path: '/maxNewTokens', rule: 'minimum', message: `must be an integer >= 0, got ${maxNewTokens}`, allowed: { minimum: 0 } });
  const temperature = o.temperature ?? 0;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) issues.push({ path: '/temperature', rule: 'minimum', message: `must be a finite number >= 0, got ${temperature}`, allowed: { minimum: 0 } });
  const topK = o.topK ?? 0;
  if (!Number.isInteger(topK) || topK < 0) issues.push({ path: '/topK', rule: 'minimum', message: `must be an integer >= 0 (0 = off), got ${topK}`, allowed: { minimum: 0 } });
  const topP = o.topP ?? 1;
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) issues.push({ path: '/topP', rule: 'maximum', message: `must be in (0, 1], got ${topP}`, allowed: '(0, 1]' });
  const seed = o.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) issues.push({ path: '/seed', rule: 'maximum', message: `must be an integer in 0..4294967295, got ${seed}`, allowed: '0..4294967295' });
  for (const [i, s] of (o.stop ?? []).entries()) {
    if (typeof s === 'string' ? s.length === 0 : !Number.isInteger(s) || s < 0) {
      issues.push({ path: `/stop/${i}`, rule: 'type', message: `must be a non-empty string or a token id, got ${JSON.stringify(s)}`, allowed: 'string | integer >= 0' });
    }
  }
  if (typeof o.prompt !== 'string' && !Array.isArray(o.prompt)) issues.push({ path: '/prompt', rule: 'type', message: 'must be a string or an array of token ids', allowed: 'string | number[]' });
  if (o.context !== undefined && (typeof o.context === 'string') !== (typeof o.prompt === 'string')) {
    issues.push({ path: '/context', rule: 'type', message: 'must be text when the prompt is text and token ids when the prompt is token ids', allowed: typeof o.prompt === 'string' ? 'string' : 'number[]' });
  }
  if (issues.length > 0) throw new ConfigError(issues, 'generate options');
  return { maxNewTokens, sampling: { temperature, topK, topP } };
}

/** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
function pendingStopPrefix(text: string, stops: readonly string[]): number {
  let best = 0;
  for (const s of stops) {
    for (let k = Math.min(s.length - 1, text.length); k > best; k--) {
      if (text.endsWith(s.slice(0, k))) {
        best = k;
        break;
      }
    }
  }
  return best;
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
  const t0 = performance.now();
  const { maxNewTokens, sampling } = validate(options);
  const { model } = options;
  const { context: contextIds, rest: promptIds } = encodeInput(model, options);
  if (promptIds.length === 0) throw new ModelError('the prompt encodes to no tokens; give at least one', { field: 'prompt' });
  const stopStrings = (options.stop ?? []).filter((s): s is string => typeof s === 'string');
  const stopIds = new Set((options.stop ?? []).filter((s): s is number => typeof s === 'number'));
  const eos = new Set(options.stopAtEos === false ? [] : [...model.tokenizer.eosTokenIds, ...model.config.eosTokenIds]);
  // Sampling gets its own stream so it never shares draws with the policies' RNG.
  const rng = createRng(options.seed ?? 0).fork(0x73616d70);
  const session = new Session(model, options);
  const tokens: number[] = [];
  let text = '';
  let emitted = 0;
  let finishReason: FinishReason = 'length';
  let prefillMs = 0;
  let decodeMs = 0;
  let decodeSteps = 0;
  try {
    let logits = contextIds.length > 0 ? (await session.prefill(contextIds), await session.feed(promptIds)) : await session.prefill(promptIds);
    prefillMs = performance.now() - t0;
    const tDecode = performance.now();
    while (tokens.length < maxNewTokens) {
      const token = sampleToken(logits, sampling, rng);
      tokens.push(token);
      const decoded = model.tokenizer.decode(tokens);
      let done = false;
      if (eos.has(token)) {
        finishReason = 'eos';
        done = true;
      } else if (stopIds.has(token)) {
        finishReason = 'stop';
        done = true;
      }
      text = decoded;
      if (stopStrings.length > 0) {
        const from = Math.max(0, emitted - Math.max(...stopStrings.map((s) => s.length)));
        let cut = -1;
        for (const s of stopStrings) {
          const at = decoded.indexOf(s, from);
          if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0) {
          text = decoded.slice(0, cut);
          finishReason = 'stop';
          done = true;
        }
      }
      if (done || tokens.length >= maxNewTokens) {
        options.onToken?.({ token, index: tokens.length - 1, text: text.slice(emitted) });
        emitted = text.length;
        break;
      }
      let safe = text.length - pendingStopPrefix(text, stopStrings);
      while (safe > emitted && text.charCodeAt(safe - 1) === 0xfffd) safe--;
      options.onToken?.({ token, index: tokens.length - 1, text: safe > emitted ? text.slice(emitted, safe) : '' });
      emitted = Math.max(emitted, safe);
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
      contextTokens: contextIds.length,
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
