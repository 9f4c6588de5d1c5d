import {
  CacheManager,
  hostTensor,
  ModelError,
  type Budget,
  type GuardOptions,
  type KVCachePolicy,
  type KVKernels,
  type LayerCache,
  type Logger,
} from '@kvfold/core';
import { bridgeFor, ortTensor, type TensorBridge } from './bridge.js';
import { checkPolicyFits, inspectDecoder, type DecoderInfo, type OrtTensorLike, type TransformersModelLike } from './model.js';

/** Options of {@link CompressedSession.create}. */
export interface CompressedSessionOptions<T> {
  /** A transformers.js causal LM whose decoder follows the Hugging Face cache interface. */
  readonly model: TransformersModelLike;
  /** Kernels of the kvfold backend the policy runs on (`await kv.backend('reference')` or `'onnx'`). */
  readonly kernels: KVKernels<T>;
  /** Cache policy; none keeps every token. */
  readonly policy?: KVCachePolicy;
  /** Budget, a ratio of the prompt or `{ tokens }`; default 1 (the whole prompt). */
  readonly budget?: Budget;
  /** Seed of the policy's RNG (forked per layer and step). Default 0. */
  readonly seed?: number;
  /**
   * Proportional attention: feed `log(count)` of merged slots through the decoder's `past_log_counts.{i}`
   * inputs (an export with `proportional`, loaded with `model_file_name: 'model_proportional'`). Default false.
   */
  readonly proportional?: boolean;
  /** Guard policy calls with core's input validation (default true). */
  readonly guard?: boolean | GuardOptions;
  /** Where policies report. Default silent. */
  readonly logger?: Logger;
}

interface HostRows {
  readonly positions: Int32Array;
  readonly counts: Int32Array;
  readonly scores: Float32Array;
}

/**
 * One sequence decoded by a transformers.js model while a kvfold policy compresses its KV cache. The
 * first {@link feed} is the prompt (the policy's `prefill` runs after it, with the budget resolved against
 * the prompt length); every later one is a decode step (the policy's `step` runs after it). The decoder is
 * run with `position_ids` = true token positions and an `attention_mask` of ones over the kept slots, so a
 * compressed cache is attended exactly as the tfjs runtime attends it. Batch size is 1.
 */
export class CompressedSession<T> {
  /** What the decoder offers (layers, heads, attention_sums, ...). */
  readonly info: DecoderInfo;
  /** Kernels the policy runs on. */
  readonly kernels: KVKernels<T>;
  private readonly options: CompressedSessionOptions<T>;
  /**
   * The caches, the policy calls and the counts, as `@kvfold/runtime` keeps them (core's cache manager):
   * the decoder's `present` tensors replace each layer's cache, and the manager runs the policy on them.
   */
  private readonly cache: CacheManager<T>;
  private bridge?: TensorBridge<T>;
  private readonly empty: Float32Array = new Float32Array(0);
  private disposed = false;

  private constructor(options: CompressedSessionOptions<T>, info: DecoderInfo) {
    this.options = options;
    this.info = info;
    this.kernels = options.kernels;
    this.cache = new CacheManager({
      kernels: options.kernels,
      layers: info.layers,
      kvHeads: info.kvHeads,
      headDim: info.headDim,
      ...(options.policy ? { policy: options.policy } : {}),
      ...(options.budget !== undefined ? { budget: options.budget } : {}),
      ...(options.seed !== undefined ? { seed: options.seed } : {}),
      ...(options.guard !== undefined ? { guard: options.guard } : {}),
      ...(options.logger ? { logger: options.logger } : {}),
      proportional: options.proportional ?? false,
    });
  }

  /**
   * Check the model and the policy, then start an empty sequence. Nothing runs before every check passed.
   * @throws ModelError when the decoder lacks an input or output kvfold needs (or `proportional` without
   *   `past_log_counts` inputs); MissingObservationError when the policy needs an observation the decoder does not expose.
   */
  static create<T>(options: CompressedSessionOptions<T>): CompressedSession<T> {
    const info = inspectDecoder(options.model);
    checkPolicyFits(options.policy, info);
    if (options.proportional && !info.logCounts) {
      throw new ModelError('proportional attention needs the decoder\'s past_log_counts.{i} inputs: export with `kvfold export-onnx --proportional` and load onnx/model_proportional.onnx (from_pretrained(folder, { model_file_name: "model_proportional" }))', { field: 'proportional', missing: 'past_log_counts.0' });
    }
    return new CompressedSession(options, info);
  }

  /** The policy (guarded unless `guard: false`), if any. */
  get policy(): KVCachePolicy | undefined {
    return this.cache.policy;
  }

  /** The next true position (= tokens seen so far), independent of how many slots the cache keeps. */
  get position(): number {
    return this.cache.position;
  }

  /** Prompt length the budget was resolved against (0 before the first feed). */
  get promptLength(): number {
    return this.cache.promptLength;
  }

  /** The resolved budget in slots, once the prompt was fed with a policy. */
  get budget(): number | undefined {
    return this.cache.budget;
  }

  /** Whether tensors cross between onnxruntime and the backend without copies. */
  get zeroCopy(): boolean {
    return this.bridge?.zeroCopy ?? false;
  }

  /** Slots per layer (0 before the first feed). */
  lengths(): number[] {
    return this.cache.lengths();
  }

  /** Bytes the caches hold now (keys, values, positions, counts, scores), counted as `@kvfold/runtime` does. */
  bytes(): number {
    return this.cache.bytes();
  }

  /** Largest {@link bytes} seen (after every forward pass and every compression). */
  get peakBytes(): number {
    return this.cache.peakBytes;
  }

  /**
   * Run `tokens` at the next true positions over the kept slots, then let the policy compress (prefill on
   * the first call, step afterwards). Returns the logits of the last token (`[vocab]`), or of every fed
   * token (`[n * vocab]`) with `logits: 'all'`.
   * @throws ModelError for an empty call or a disposed session; policy and budget errors as typed errors.
   */
  async feed(tokens: readonly number[], logits: 'last' | 'all' = 'last'): Promise<Float32Array> {
    if (this.disposed) throw new ModelError('the session was disposed', { reason: 'disposed' });
    if (tokens.length === 0) throw new ModelError('feed needs at least one token', { field: 'tokens' });
    tokens.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0) throw new ModelError(`tokens[${i}] = ${t} is not a token id`, { field: 'tokens' });
    });
    const { layers, kvHeads: H, headDim: D, session } = this.info;
    const n = tokens.length;
    const L = this.lengths()[0] ?? 0;
    const first = this.cache.policyCalls === 0;
    const positions = Array.from({ length: n }, (_, i) => this.cache.position + i);
    const rows: HostRows[] = [];
    const feeds: Record<string, unknown> = {
      input_ids: ortTensor('int64', BigInt64Array.from(tokens, (t) => BigInt(t)), [1, n]),
      attention_mask: ortTensor('int64', new BigInt64Array(L + n).fill(1n), [1, L + n]),
      position_ids: ortTensor('int64', BigInt64Array.from(positions, (p) => BigInt(p)), [1, n]),
    };
    if (this.info.numLogitsToKeep) feeds.num_logits_to_keep = ortTensor('int64', BigInt64Array.from([logits === 'all' ? 0n : 1n]), []);
    if (this.info.useCacheBranch) feeds.use_cache_branch = ortTensor('bool', Uint8Array.from([first ? 0 : 1]), [1]);
    for (let i = 0; i < layers; i++) {
      const c = this.cache.layer(i);
      const host = c ? await this.hostRows(c) : { positions: new Int32Array(0), counts: new Int32Array(0), scores: new Float32Array(0) };
      rows.push(host);
      feeds[`past_key_values.${i}.key`] = c ? await this.bridge!.feed(c.keys, [1, H, L, D]) : ortTensor('float32', this.empty, [1, H, 0, D]);
      feeds[`past_key_values.${i}.value`] = c ? await this.bridge!.feed(c.values, [1, H, L, D]) : ortTensor('float32', this.empty, [1, H, 0, D]);
      if (this.info.logCounts) {
        const lc = new Float32Array(H * L);
        if (this.options.proportional) for (let j = 0; j < lc.length; j++) lc[j] = Math.log(host.counts[j]!);
        feeds[`past_log_counts.${i}`] = ortTensor('float32', lc, [1, H, L]);
      }
    }
    // Only the observations the policy declared are fetched; ORT then skips computing the others.
    const wantSums = this.cache.needs.has('attention');
    const wantLast = this.cache.needs.has('lastAttention');
    const fetches = ['logits'];
    for (let i = 0; i < layers; i++) fetches.push(`present.${i}.key`, `present.${i}.value`, ...(wantSums ? [`attention_sums.${i}`] : []), ...(wantLast ? [`attention_last.${i}`] : []));
    const out = await session.run(feeds, fetches);
    this.bridge ??= bridgeFor(this.kernels, out['present.0.key']!);
    this.cache.reserve(n);

    const T = L + n;
    for (let i = 0; i < layers; i++) {
      this.cache.replace(i, this.extend(rows[i]!, positions, out[`present.${i}.key`]!, out[`present.${i}.value`]!, T));
      this.cache.record(i, {
        ...(wantSums ? { attention: this.bridge.adopt(out[`attention_sums.${i}`]!, [H, T]) } : {}),
        ...(wantLast ? { lastAttention: this.bridge.adopt(out[`attention_last.${i}`]!, [H, T]) } : {}),
      });
    }
    const logitsOut = out.logits!;
    const vocab = logitsOut.dims[logitsOut.dims.length - 1]!;
    const all = logitsOut.data as Float32Array;
    const host = logits === 'all' ? all.slice(all.length - n * vocab) : all.slice(all.length - vocab);
    await this.cache.compress();
    return host;
  }

  /** Prompt rows of the small per-slot tensors (positions, counts, scores), in host memory. */
  private async hostRows(c: LayerCache<T>): Promise<HostRows> {
    const [p, k, s] = await Promise.all([this.kernels.toHost(c.positions), this.kernels.toHost(c.counts), this.kernels.toHost(c.scores)]);
    return { positions: p.data as Int32Array, counts: k.data as Int32Array, scores: s.data as Float32Array };
  }

  /**
   * The layer after this call: keys and values are the decoder's `present` tensors themselves (the
   * decoder already concatenated the kept slots and the new ones); positions, counts and scores gain the
   * new slots' rows (true positions, count 1, score 0), one `set` per head.
   */
  private extend(prev: HostRows, positions: readonly number[], keys: OrtTensorLike, values: OrtTensorLike, T: number): LayerCache<T> {
    const { kvHeads: H, headDim: D } = this.info;
    const L = prev.positions.length / H;
    const pos = new Int32Array(H * T);
    const counts = new Int32Array(H * T).fill(1);
    const scores = new Float32Array(H * T);
    const fresh = Int32Array.from(positions);
    for (let h = 0; h < H; h++) {
      pos.set(prev.positions.subarray(h * L, (h + 1) * L), h * T);
      pos.set(fresh, h * T + L);
      counts.set(prev.counts.subarray(h * L, (h + 1) * L), h * T);
      scores.set(prev.scores.subarray(h * L, (h + 1) * L), h * T);
    }
    const k = this.kernels;
    return {
      keys: this.bridge!.adopt(keys, [H, T, D]),
      values: this.bridge!.adopt(values, [H, T, D]),
      positions: k.fromHost(hostTensor('int32', [H, T], pos)),
      counts: k.fromHost(hostTensor('int32', [H, T], counts)),
      scores: k.fromHost(hostTensor('float32', [H, T], scores)),
    };
  }

  /** Release every cache. Safe to call twice. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.cache.dispose();
  }
}
