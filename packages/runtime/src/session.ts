import * as tf from '@tensorflow/tfjs-core';
import { ModelError, type Budget, type GroupReduction, type GuardOptions, type KVCachePolicy, type KVKernels, type Logger } from '@kvfold/core';
import { CacheManager } from './cache-manager.js';
import type { LlamaConfig } from './model/config.js';
import { LlamaDecoder, type DecoderOptions } from './model/decoder.js';
import type { LlamaWeights } from './model/weights.js';
import type { TextTokenizer } from './tokenizer.js';

// Models may run on tfjs's cpu engine, which prints a Node.js banner on its first tensor; tfjs's PROD flag
// only silences its console messages (as in @kvfold/backend-tfjs; KVFOLD_TFJS_LOGS=1 keeps them).
if (process.env.KVFOLD_TFJS_LOGS !== '1') tf.env().set('PROD', true);

/** A loaded model: configuration, tokenizer, decoder weights on tfjs, and the kernels that own caches. */
export interface Model {
  /** Parsed `config.json`. */
  readonly config: LlamaConfig;
  /** Tokenizer of the model. */
  readonly tokenizer: TextTokenizer;
  /** The decoder (weights on the active tfjs backend). */
  readonly decoder: LlamaDecoder;
  /** Kernels of the tfjs backend; policies run on them. */
  readonly kernels: KVKernels<tf.Tensor>;
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

/** Build a {@link Model} from weights already in memory (tests, converters, generated models). */
export function createModel(init: ModelInit): Model {
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

/** Options of a {@link Session}: the cache policy and how it is fed. */
export interface SessionOptions {
  /** Cache policy; none keeps every token. */
  readonly policy?: KVCachePolicy;
  /** Budget, a ratio of the prompt or `{ tokens }`; default 1 (the whole prompt). */
  readonly budget?: Budget;
  /** Seed of the policy's RNG (and of sampling in `generate`). Default 0. */
  readonly seed?: number;
  /** GQA group reduction of observed attention. Default `mean`. */
  readonly groupReduction?: GroupReduction;
  /** Proportional attention: add `log(count)` to merged slots' logits. Default false. */
  readonly proportional?: boolean;
  /** Guard policy calls with core's input validation (default true). */
  readonly guard?: boolean | GuardOptions;
  /** Where policies report. Default silent. */
  readonly logger?: Logger;
}

/** Options of {@link Session.feed}. */
export interface FeedOptions {
  /** Return logits of every fed token (`[n * vocab]`) instead of only the last (`[vocab]`). */
  readonly logits?: 'all' | 'last';
}

/**
 * One sequence being decoded: a {@link CacheManager} plus the forward passes that fill it. The first
 * {@link feed} is the prompt (the policy's `prefill` runs after it); every later one is a decode step.
 */
export class Session {
  /** The model. */
  readonly model: Model;
  /** The caches of this sequence. */
  readonly cache: CacheManager;

  /** Start an empty sequence. */
  constructor(model: Model, options: SessionOptions = {}) {
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
      host = (await logits.data()) as Float32Array;
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
async function activateEngine(kernels: KVKernels<tf.Tensor>): Promise<void> {
  const engine = (kernels as { engine?: unknown }).engine;
  if (typeof engine === 'string' && tf.getBackend() !== engine && tf.findBackendFactory(engine) != null) await tf.setBackend(engine);
}
