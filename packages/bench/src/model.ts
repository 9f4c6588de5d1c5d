import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  ModelError,
  SPECIFICATION_VERSION,
  type Budget,
  type GroupReduction,
  type HostLayer,
  type HostTensor,
  type KVCachePolicy,
  type KVKernels,
  type LayerCache,
  type Observation,
  type ObservationNeed,
  type PolicyContext,
} from '@kvfold/core';
import { modelTinyPath } from '@kvfold/model-tiny';
import { CacheManager, loadModel, type Model } from '@kvfold/runtime';
import type { ModelEngine } from './config.js';

/** What the report says about the model. */
export interface ModelInfo {
  /** `embedded` or the folder as configured. */
  readonly source: string;
  /** Absolute folder. */
  readonly folder: string;
  /** `model_type` of config.json. */
  readonly modelType: string;
  /** Decoder layers. */
  readonly layers: number;
  /** Query heads. */
  readonly heads: number;
  /** kv heads. */
  readonly kvHeads: number;
  /** Head dimension. */
  readonly headDim: number;
  /** Vocabulary size. */
  readonly vocabSize: number;
  /** `bytes` or `huggingface`. */
  readonly tokenizer: string;
  /** Training steps recorded in config.json (`kvfold.trained_steps`), when present. */
  readonly trainedSteps?: number;
  /** Tokens seen in training (`kvfold.tokens_seen`), when present. */
  readonly tokensSeen?: number;
  /** SHA-256 prefix of the weights file(s) sizes and mtimes, to tell weight versions apart in reports. */
  readonly weightsStamp: string;
  /** What the kernels run on. */
  readonly kernels: string;
}

/** A loaded model with what the report needs to know about it. */
export interface BenchModel {
  /** The runtime model. */
  readonly model: Model;
  /** Description for reports. */
  readonly info: ModelInfo;
}

/** Resolve `embedded` or a folder path to an absolute folder. @throws ModelError when it does not exist. */
export function resolveModelFolder(source: string): string {
  const folder = source === 'embedded' ? modelTinyPath : resolve(source);
  if (!existsSync(folder) || !statSync(folder).isDirectory()) {
    throw new ModelError(`model folder ${JSON.stringify(source)} does not exist${source === 'embedded' || folder === source ? '' : ` (resolved to ${folder})`}; give "embedded" or a Hugging Face model folder with config.json and safetensors`, { field: 'bench.model', value: source });
  }
  if (!existsSync(join(folder, 'config.json'))) {
    throw new ModelError(`model folder ${folder} has no config.json; a Hugging Face model folder needs config.json, model.safetensors (or an index) and tokenizer.json`, { field: 'bench.model', value: source });
  }
  return folder;
}

/**
 * Load the benchmark's model: `embedded` (the project's model, @kvfold/model-tiny) or a Hugging Face
 * folder, on the given tfjs engine.
 * @throws ModelError for a missing folder or a broken checkpoint; BackendUnavailableError for the engine.
 */
export async function openModel(source: string, engine: ModelEngine = 'auto'): Promise<BenchModel> {
  const folder = resolveModelFolder(source);
  const model = await loadModel(folder, { engine });
  const raw = JSON.parse(readFileSync(join(folder, 'config.json'), 'utf8')) as { kvfold?: { trained_steps?: unknown; tokens_seen?: unknown } };
  const c = model.config;
  const steps = raw.kvfold?.trained_steps;
  const seen = raw.kvfold?.tokens_seen;
  return {
    model,
    info: {
      source,
      folder,
      modelType: c.modelType,
      layers: c.layers,
      heads: c.heads,
      kvHeads: c.kvHeads,
      headDim: c.headDim,
      vocabSize: c.vocabSize,
      tokenizer: model.tokenizer.kind,
      ...(typeof steps === 'number' ? { trainedSteps: steps } : {}),
      ...(typeof seen === 'number' ? { tokensSeen: seen } : {}),
      weightsStamp: weightsStamp(folder),
      kernels: model.kernels.describe(),
    },
  };
}

// The stamp hashes the weight files' bytes, not their size and mtime: a fresh clone or checkout of the same
// weights must give the same stamp, or a resumed run folder would warn that its items mix model versions.
// Streaming in 16 MiB chunks keeps memory bounded; the cost is one more read of bytes the loader reads anyway.
/** Content hash (sha256, 12 hex digits) of a model folder's safetensors files and shard index. */
export function weightsStamp(folder: string): string {
  const files = readdirSync(folder)
    .filter((f) => f.endsWith('.safetensors') || f === 'model.safetensors.index.json')
    .sort();
  const hash = createHash('sha256');
  const chunk = Buffer.allocUnsafe(16 * 1024 * 1024);
  for (const f of files) {
    hash.update(`${f}\0`);
    const fd = openSync(join(folder, f), 'r');
    try {
      for (let n = readSync(fd, chunk, 0, chunk.length, null); n > 0; n = readSync(fd, chunk, 0, chunk.length, null)) {
        hash.update(chunk.subarray(0, n));
      }
    } finally {
      closeSync(fd);
    }
  }
  return hash.digest('hex').slice(0, 12);
}

/** Observations of one forward pass, per layer, in host memory. */
export interface HostObservation {
  /** Attention column sums of the pass's queries, `[kvHeads, L]`. */
  readonly attention: HostTensor<'float32'>;
  /** The last query's attention, `[kvHeads, L]`. */
  readonly lastAttention: HostTensor<'float32'>;
  /** The pass's post-RoPE queries `[heads, n, headDim]`, when captured. */
  readonly queries?: HostTensor<'float32'>;
}

/** A prompt run once with the full cache: the cache, what attention observed, and the logits. */
export interface Capture {
  /** Tokens in the cache. */
  readonly length: number;
  /** Full cache of every layer. */
  readonly layers: HostLayer[];
  /** Observations of the prompt pass, per layer. */
  readonly observed: HostObservation[];
  /** Logits of the last prompt token (`[vocab]`) or of every token (`[n * vocab]`). */
  readonly logits: Float32Array;
  /** Observations of the optional probe pass that followed (queries included), per layer. */
  readonly probe?: HostObservation[];
}

/** Options of {@link capture}. */
export interface CaptureOptions {
  /** Logits of the last token (default) or of all. */
  readonly logits?: 'last' | 'all';
  /** Also keep the prompt pass's queries (for policies that need them). */
  readonly queries?: boolean;
  /** Tokens fed after the prompt whose observations (and queries) are captured too. */
  readonly probe?: readonly number[];
  /** GQA group reduction of observed attention. Default `mean`. */
  readonly groupReduction?: GroupReduction;
}

/** tfjs has one current engine per process; make the model's the current one (cheap when it already is). */
async function activate(kernels: KVKernels<tf.Tensor>): Promise<void> {
  const engine = (kernels as { engine?: unknown }).engine;
  if (typeof engine === 'string' && tf.getBackend() !== engine && tf.findBackendFactory(engine) != null) await tf.setBackend(engine);
}

/** Run `ids` through the decoder at the next true positions, then let the cache's policy compress. */
async function forward(model: Model, cache: CacheManager<tf.Tensor>, ids: readonly number[], logits: 'last' | 'all'): Promise<Float32Array> {
  await activate(model.kernels);
  const positions = cache.reserve(ids.length);
  const out = model.decoder.forward(ids, positions, cache, { logits });
  let host: Float32Array;
  try {
    host = (await out.data()) as Float32Array;
  } finally {
    out.dispose();
  }
  await cache.compress();
  return host;
}

/**
 * A no-op "policy" that copies what the runtime observed to the host and keeps the cache unchanged: it
 * sees exactly what a real policy would see at the same call, through the same cache manager.
 */
class Recorder implements KVCachePolicy {
  readonly specificationVersion = SPECIFICATION_VERSION;
  readonly name = 'bench-recorder';
  readonly needs: readonly ObservationNeed[];
  /** Per call (0 = prompt), per layer. */
  readonly calls: HostObservation[][] = [];

  constructor(queries: boolean) {
    this.needs = queries ? ['attention', 'lastAttention', 'queries'] : ['attention', 'lastAttention'];
  }

  async prefill<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    const k = ctx.kernels;
    const call = (this.calls[ctx.step] ??= []);
    call[ctx.layerIndex] = {
      attention: (await k.toHost(observed.attention!)) as HostTensor<'float32'>,
      lastAttention: (await k.toHost(observed.lastAttention!)) as HostTensor<'float32'>,
      ...(observed.queries !== undefined ? { queries: (await k.toHost(observed.queries)) as HostTensor<'float32'> } : {}),
    };
    return layer;
  }

  step<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    return this.prefill(layer, observed, ctx);
  }
}

/**
 * Run a prompt once with the full cache and keep the cache, the attention it observed, and the logits,
 * so every policy x budget can start from the same prefill (the prompt's forward pass does not depend on
 * the policy, which only acts after it).
 */
export async function capture(model: Model, ids: readonly number[], options: CaptureOptions = {}): Promise<Capture> {
  const recorder = new Recorder(options.queries === true || options.probe !== undefined);
  const { config } = model;
  const cache = new CacheManager({ kernels: model.kernels, layers: config.layers, kvHeads: config.kvHeads, headDim: config.headDim, policy: recorder, guard: false, groupReduction: options.groupReduction ?? 'mean' });
  try {
    const logits = await forward(model, cache, ids, options.logits ?? 'last');
    const layers = await cache.snapshot();
    const observed = recorder.calls[0]!;
    if (!options.queries) for (let i = 0; i < observed.length; i++) observed[i] = { attention: observed[i]!.attention, lastAttention: observed[i]!.lastAttention };
    let probe: HostObservation[] | undefined;
    if (options.probe && options.probe.length > 0) {
      await forward(model, cache, options.probe, 'last');
      probe = recorder.calls[1]!;
    }
    return { length: ids.length, layers, observed, logits, ...(probe ? { probe } : {}) };
  } finally {
    cache.dispose();
  }
}

/** Options of {@link PolicyRun.start}. */
export interface PolicyRunOptions {
  /** Seed of the policy's RNG. */
  readonly seed?: number;
  /** GQA group reduction. */
  readonly groupReduction?: GroupReduction;
  /** Proportional attention in the decoder. */
  readonly proportional?: boolean;
}

/** The index of the largest value (ties to the lower index). */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/**
 * Greedy decoding from `logits` (the prediction of the next token) with any runtime's `feed`: at most
 * `maxTokens` tokens, ending early at an EOS id or when `done(tokens)` says so.
 */
export async function greedyDecode(logits: Float32Array, maxTokens: number, eos: ReadonlySet<number>, feed: (token: number) => Promise<Float32Array>, done: (tokens: readonly number[]) => boolean = () => false): Promise<number[]> {
  const out: number[] = [];
  let next = logits;
  while (out.length < maxTokens) {
    const t = argmax(next);
    out.push(t);
    if (eos.has(t) || out.length >= maxTokens || done(out)) break;
    next = await feed(t);
  }
  return out;
}

/**
 * One sequence continuing from a {@link Capture} under a policy: the captured full cache and
 * observations are handed to a fresh cache manager, whose policy compresses them exactly as after a
 * real prefill; later tokens are decoded over the compressed cache.
 */
export class PolicyRun {
  /** The cache manager (policy, budget, true positions). */
  readonly cache: CacheManager<tf.Tensor>;
  /** Time of the policy's prefill compression of every layer, ms (the upload of the captured cache excluded). */
  compressMs = 0;
  private constructor(
    private readonly model: Model,
    cache: CacheManager<tf.Tensor>,
  ) {
    this.cache = cache;
  }

  /**
   * Start from `captured` with `policy` (none = full cache) at `budget` (a ratio of the captured length).
   * @throws BudgetError and any typed error the policy throws.
   */
  static async start(model: Model, captured: Capture, policy: KVCachePolicy | undefined, budget: Budget, options: PolicyRunOptions = {}): Promise<PolicyRun> {
    const { config, kernels } = model;
    const cache = new CacheManager({
      kernels,
      layers: config.layers,
      kvHeads: config.kvHeads,
      headDim: config.headDim,
      ...(policy ? { policy } : {}),
      budget,
      seed: options.seed ?? 0,
      groupReduction: options.groupReduction ?? 'mean',
      proportional: options.proportional ?? false,
    });
    const run = new PolicyRun(model, cache);
    try {
      await activate(kernels);
      const positions = Int32Array.from(cache.reserve(captured.length));
      captured.layers.forEach((layer, li) => {
        cache.append(li, kernels.fromHost(layer.keys), kernels.fromHost(layer.values), positions);
        const seen = captured.observed[li]!;
        const obs: { attention?: tf.Tensor; lastAttention?: tf.Tensor; queries?: tf.Tensor } = {};
        if (cache.observe.attention) obs.attention = kernels.fromHost(seen.attention);
        if (cache.observe.lastAttention) obs.lastAttention = kernels.fromHost(seen.lastAttention);
        if (cache.needs.has('queries') && !seen.queries) throw new ModelError('the capture holds no queries but the policy needs them', { need: 'queries' });
        if (cache.observe.queries && seen.queries) obs.queries = kernels.fromHost(seen.queries);
        if (Object.keys(obs).length > 0) cache.record(li, obs);
      });
      const t0 = performance.now();
      await cache.compress();
      run.compressMs = performance.now() - t0;
      return run;
    } catch (e) {
      cache.dispose();
      throw e;
    }
  }

  /** Feed tokens at the next true positions; the policy's `step` runs after them. */
  feed(ids: readonly number[], logits: 'last' | 'all' = 'last'): Promise<Float32Array> {
    return forward(this.model, this.cache, ids, logits);
  }

  /**
   * Greedy decoding from `logits` (the prediction of the next token): at most `maxTokens` tokens, ending
   * early at an EOS id or when `done(tokens)` says so.
   */
  greedy(logits: Float32Array, maxTokens: number, done: (tokens: readonly number[]) => boolean = () => false): Promise<number[]> {
    const eos = new Set([...this.model.tokenizer.eosTokenIds, ...this.model.config.eosTokenIds]);
    return greedyDecode(logits, maxTokens, eos, (t) => this.feed([t]), done);
  }

  /** Release the caches. */
  dispose(): void {
    this.cache.dispose();
  }
}
