import * as tf from '@tensorflow/tfjs-core';
import { CacheManager, ModelError, type AttentionHooks, type CacheManagerOptions, type KVKernels } from '@kvfold/core';
import type { LlamaConfig } from './model/config.js';
import { LlamaDecoder, type DecoderOptions, type ForwardOptions } from './model/decoder.js';
import type { LlamaWeights } from './model/weights.js';
import type { TextTokenizer } from './tokenizer.js';

// Models may run on tfjs's cpu engine, which prints a Node.js banner on its first tensor; tfjs's PROD flag
// only silences its console messages (as in @kvfold/backend-tfjs; KVFOLD_TFJS_LOGS=1 keeps them).
if (process.env.KVFOLD_TFJS_LOGS !== '1') tf.env().set('PROD', true);

/** Logits a {@link Decoder} returns: read once, then released. */
export interface Logits {
  /** The logits in host memory, row-major `[tokens, vocab]` (or `[1, vocab]` for the last token only). */
  data(): Promise<ArrayLike<number>>;
  /** Release them. */
  dispose(): void;
}

/**
 * A model implementation a {@link Session} drives, for caches whose tensors are `T`: one forward pass of
 * `tokens` at true `positions`, with each layer's keys and values (and the observations a policy needs)
 * handed to `hooks`. This package's {@link LlamaDecoder} is the tfjs one.
 */
export interface Decoder<T> {
  /** The model configuration (layers, kv heads, head dimension, vocabulary). */
  readonly config: LlamaConfig;
  /** Run one forward pass; the caller owns the returned logits. */
  forward(tokens: readonly number[], positions: readonly number[], hooks: AttentionHooks<T>, options?: ForwardOptions): Logits;
  /** Release the weights. */
  dispose(): void;
}

/** A loaded model: configuration, tokenizer, a decoder, and the kernels of the backend that owns its caches. */
export interface Model<T = tf.Tensor> {
  /** Parsed `config.json`. */
  readonly config: LlamaConfig;
  /** Tokenizer of the model. */
  readonly tokenizer: TextTokenizer;
  /** The model implementation (the tfjs {@link LlamaDecoder} for models made by {@link createModel}). */
  readonly decoder: Decoder<T>;
  /** Kernels of the backend that owns the caches; policies run on them. */
  readonly kernels: KVKernels<T>;
  /** Folder the model was loaded from, if any. */
  readonly folder?: string;
  /** Release the weights. */
  dispose(): void;
}

/** Input of {@link createModel}. */
export interface ModelInit {
  /** The configuration. */
  readonly config: LlamaConfig;
  /** Host weights, uploaded to tfjs by this call. */
  readonly weights: LlamaWeights;
  /** Kernels of a tfjs backend (e.g. `await createTfjsKernels()` from `@kvfold/backend-tfjs`). */
  readonly kernels: KVKernels<tf.Tensor>;
  /** Tokenizer; default a byte tokenizer with the config's EOS ids. */
  readonly tokenizer: TextTokenizer;
  /** Decoder options. */
  readonly decoder?: DecoderOptions;
  /** Folder the model came from. */
  readonly folder?: string;
}

/** A {@link Model} on this package's tfjs decoder. */
export interface TfjsModel extends Model<tf.Tensor> {
  /** The tfjs decoder. */
  readonly decoder: LlamaDecoder;
}

/** Build a {@link Model} on the tfjs decoder from weights already in memory (tests, converters, generated models). */
export function createModel(init: ModelInit): TfjsModel {
  const decoder = new LlamaDecoder(init.config, init.weights, init.decoder);
  return {
    config: init.config,
    tokenizer: init.tokenizer,
    decoder,
    kernels: init.kernels,
    ...(init.folder !== undefined ? { folder: init.folder } : {}),
    dispose: () => decoder.dispose(),
  };
}

/** Options of a {@link Session}: the cache policy and how it is fed (the cache manager's, less what the model fixes). */
export type SessionOptions = Omit<CacheManagerOptions, 'kernels' | 'layers' | 'kvHeads' | 'headDim'>;

/** Options of {@link Session.feed}. */
export interface FeedOptions {
  /** Return logits of every fed token (`[n * vocab]`) instead of only the last (`[vocab]`). */
  readonly logits?: 'all' | 'last';
}

/**
 * One sequence being decoded: a {@link CacheManager} plus the forward passes that fill it, for a model
 * on any backend (`T` is its tensor type). The first {@link feed} is the prompt (the policy's `prefill`
 * runs after it); every later one is a decode step.
 */
export class Session<T = tf.Tensor> {
  /** The model. */
  readonly model: Model<T>;
  /** The caches of this sequence. */
  readonly cache: CacheManager<T>;

  /** Start an empty sequence. */
  constructor(model: Model<T>, options: SessionOptions = {}) {
    this.model = model;
    const { config } = model;
    this.cache = new CacheManager({
      kernels: model.kernels,
      layers: config.layers,
      kvHeads: config.kvHeads,
      headDim: config.headDim,
      ...options,
    });
  }

  /**
   * Run `tokens` at the next true positions, then let the policy compress (prefill on the first call,
   * step afterwards). Returns logits in host memory.
   * @throws ModelError for token ids outside the vocabulary; policy and budget errors as typed errors.
   */
  async feed(tokens: readonly number[], options: FeedOptions = {}): Promise<Float32Array> {
    if (tokens.length === 0) throw new ModelError('feed needs at least one token', { field: 'tokens' });
    const { vocabSize } = this.model.config;
    tokens.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= vocabSize) {
        throw new ModelError(`tokens[${i}] = ${t} is outside the vocabulary 0..${vocabSize - 1}`, { field: 'tokens', allowed: `0..${vocabSize - 1}` });
      }
    });
    await activateEngine(this.model.kernels);
    const positions = this.cache.reserve(tokens.length);
    const logits = this.model.decoder.forward(tokens, positions, this.cache, { logits: options.logits ?? 'last' });
    let host: Float32Array;
    try {
      const data = await logits.data();
      host = data instanceof Float32Array ? data : Float32Array.from(data);
    } finally {
      logits.dispose();
    }
    await this.cache.compress();
    return host;
  }

  /** Feed the prompt; same as the first {@link feed}. */
  prefill(tokens: readonly number[], options: FeedOptions = {}): Promise<Float32Array> {
    return this.feed(tokens, options);
  }

  /** Feed one generated token; returns the logits of the next one. */
  decode(token: number): Promise<Float32Array> {
    return this.feed([token]);
  }

  /** Release the caches. */
  dispose(): void {
    this.cache.dispose();
  }
}

/**
 * tfjs has one current engine per process. Kernels that carry an `engine` (the tfjs backend's do) switch
 * to it on every call; the decoder's own ops must run there too, or tfjs would copy tensors between
 * engines on every step. Switching to an engine that is already initialised is immediate.
 */
async function activateEngine(kernels: KVKernels<unknown>): Promise<void> {
  const engine = (kernels as { engine?: unknown }).engine;
  if (typeof engine === 'string' && tf.getBackend() !== engine && tf.findBackendFactory(engine) != null) await tf.setBackend(engine);
}
