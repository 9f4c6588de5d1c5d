import { resolveBudget, type Budget } from './budget.js';
import { createContext } from './context.js';
import { ModelError } from './errors.js';
import { checkLayer, guardPolicy, type GuardOptions } from './guard.js';
import { layerToHost, type HostLayer } from './host.js';
import { cacheShape, disposeLayer, type GroupReduction, type KVKernels, type LayerCache } from './kernels.js';
import { silentLogger, type Logger } from './logger.js';
import type { KVCachePolicy, Observation, ObservationNeed } from './policy.js';
import { appendInPlace, compactLayer, liveLength } from './scoring/in-place.js';
import { hostTensor } from './tensor.js';

/**
 * What a model asks of whoever owns the KV cache (the {@link CacheManager}), for tensors
 * of type `T` of the cache's backend: store each layer's new keys and values, say what attention
 * statistics the policy needs, and take them. Any model implementation (`@kvfold/runtime`'s tfjs decoder,
 * an ONNX decoder, ...) drives a cache through these hooks.
 */
export interface AttentionHooks<T = unknown> {
  /**
   * Append this call's keys and values (`[kvHeads, n, headDim]`, keys post-RoPE) to layer `layer` at the
   * given true positions, and return the cache the queries must attend over. The hook owns `keys` and
   * `values` after the call (it disposes them or keeps them in the cache).
   */
  append(layer: number, keys: T, values: T, positions: Int32Array): LayerCache<T>;
  /** What to pass to {@link record} (nothing at all when every flag is false). */
  readonly observe: {
    /** Sum over this call's queries of each slot's attention, `[kvHeads, L]`: pass it if the model computes it anyway. */
    readonly attention: boolean;
    /** The last query's attention, `[kvHeads, L]`: pass it if the model computes it anyway. */
    readonly lastAttention: boolean;
    /**
     * This call's post-RoPE queries, `[heads, n, headDim]`: always pass them when set. The hook observes
     * with the backend's `observe` kernel whatever attention the model did not pass.
     */
    readonly queries: boolean;
  };
  /** GQA group reduction applied to observed attention. */
  readonly groupReduction: GroupReduction;
  /** Add `log(count)` to the logits of merged slots. */
  readonly proportional: boolean;
  /** Take this call's observation of layer `layer`; the hook owns its tensors. */
  record(layer: number, observed: Observation<T>): void;
}

/** Options of {@link CacheManager}. */
export interface CacheManagerOptions<T = unknown> {
  /** Kernels of the backend that owns the cache tensors (any backend: the model hands over tensors of that backend). */
  readonly kernels: KVKernels<T>;
  /** Number of decoder layers. */
  readonly layers: number;
  /** Key/value heads per layer. */
  readonly kvHeads: number;
  /** Head dimension. */
  readonly headDim: number;
  /** Compression policy; none keeps the full cache and observes nothing. */
  readonly policy?: KVCachePolicy;
  /** Budget the policy works to, resolved against the prompt length at prefill. Default 1 (the whole prompt). */
  readonly budget?: Budget;
  /** Seed of the policies' RNG (forked per layer and step by `createContext`). Default 0. */
  readonly seed?: number;
  /** Reduction of a GQA group's query heads before the policy sees attention. Default `mean`. */
  readonly groupReduction?: GroupReduction;
  /** Add `log(count)` to merged slots' logits (proportional attention). Default false. */
  readonly proportional?: boolean;
  /**
   * Validate every policy call's inputs with core's `guardPolicy` and the shapes and dtypes of what it
   * returns (`true`, default), with custom guard options, or not at all (`false`).
   */
  readonly guard?: boolean | GuardOptions;
  /** Where policies report. Default silent. */
  readonly logger?: Logger;
  /**
   * Where `attention` and `lastAttention` come from: `model` (default) takes what the model computed with
   * its own softmax when it offers it (the tfjs decoder does, at no extra cost) and computes the rest with
   * the backend's `observe` kernel from the queries the model passes; `kernel` always uses `observe`.
   */
  readonly observation?: 'model' | 'kernel';
  /**
   * Let decode steps edit the caches in place on a backend that can (`KVKernels.editView`: reference, onnx
   * on CPU, tfjs on its wasm engine):
   * a policy that supports it (H2O, CaM with decode `evict`) drops one slot per head by moving the newest
   * row over it, and the next one-token {@link CacheManager.append} writes into the spare row it leaves, so
   * no token copies the cache (see `evictInPlace`). Readers get caches in position order from
   * {@link CacheManager.snapshot}; {@link CacheManager.layer} returns the cache as it is. Turned off for good
   * by the first {@link CacheManager.replace} (a model that builds its caches itself would attend a spare
   * row). Default true; no effect on backends without `editView` (tfjs on its cpu or tensorflow engines).
   */
  readonly inPlace?: boolean;
}

/** Bytes of one slot: float32 key and value vectors plus int32 position, int32 count and float32 score. */
function slotBytes(headDim: number): number {
  return 2 * headDim * 4 + 3 * 4;
}

/**
 * Owns the per-layer KV caches of one sequence, on any backend (`T` is its tensor type). It appends each
 * call's keys and values, hands the policy exactly the observations it declared in `needs`, runs
 * `prefill` after the prompt and `step` after each decoding call, and replaces caches with
 * `disposeLayer(kernels, old, next)`. Attention a model did not compute itself is observed with the
 * backend's `observe` kernel from the queries the model passed. The true token position is a counter of
 * its own: a compressed cache is shorter than the sequence, so positions are never derived from the cache length.
 */
export class CacheManager<T = unknown> implements AttentionHooks<T> {
  /** Kernels owning the cache tensors. */
  readonly kernels: KVKernels<T>;
  /** The policy (guarded unless `guard: false`), if any. */
  readonly policy?: KVCachePolicy;
  /** GQA group reduction used for observations. */
  readonly groupReduction: GroupReduction;
  /** Whether attention adds `log(count)` for merged slots. */
  readonly proportional: boolean;
  /** What the model is asked for (see {@link AttentionHooks.observe}). */
  readonly observe: {
    /** The policy needs `attention` and the model may compute it. */
    readonly attention: boolean;
    /** The policy needs `lastAttention` and the model may compute it. */
    readonly lastAttention: boolean;
    /** The model must pass its queries: the policy needs them, or needs attention the model may not compute. */
    readonly queries: boolean;
  };

  private readonly options: CacheManagerOptions<T>;
  private readonly logger: Logger;
  /** What the policy declared in `needs` (the observations it receives). */
  readonly needs: ReadonlySet<ObservationNeed>;
  private caches: (LayerCache<T> | undefined)[];
  private pending: (Observation<T> | undefined)[];
  private reserved = new Int32Array(0);
  private nextPosition = 0;
  private calls = 0;
  private sinceCompress = 0;
  private prompt = 0;
  private resolvedBudget: number | undefined;
  private peak = 0;
  private disposed = false;
  private readonly checkResults: boolean;
  private inPlace: boolean;

  /** Create an empty cache for `layers` layers. */
  constructor(options: CacheManagerOptions<T>) {
    this.options = options;
    this.kernels = options.kernels;
    this.logger = options.logger ?? silentLogger;
    const guard = options.guard ?? true;
    if (options.policy) this.policy = guard === false ? options.policy : guardPolicy(options.policy, guard === true ? {} : guard);
    this.checkResults = guard !== false;
    const needs = new Set<ObservationNeed>(options.policy?.needs ?? []);
    this.needs = needs;
    const fromModel = (options.observation ?? 'model') === 'model';
    const attention = needs.has('attention') || needs.has('lastAttention');
    this.observe = {
      attention: fromModel && needs.has('attention'),
      lastAttention: fromModel && needs.has('lastAttention'),
      queries: needs.has('queries') || attention,
    };
    this.groupReduction = options.groupReduction ?? 'mean';
    this.proportional = options.proportional ?? false;
    this.inPlace = (options.inPlace ?? true) && options.kernels.editView !== undefined;
    this.caches = Array.from({ length: options.layers }, () => undefined);
    this.pending = Array.from({ length: options.layers }, () => undefined);
  }

  /** The next true position (= tokens seen so far), independent of how many slots the cache keeps. */
  get position(): number {
    return this.nextPosition;
  }

  /** Number of policy calls made so far (0 before prefill; prefill is call 0, decode steps 1, 2, ...). */
  get policyCalls(): number {
    return this.calls;
  }

  /** Prompt length the budget was resolved against (0 before prefill). */
  get promptLength(): number {
    return this.prompt;
  }

  /** The resolved budget in slots, once prefill has run with a policy. */
  get budget(): number | undefined {
    return this.resolvedBudget;
  }

  /**
   * Positions for the next `n` tokens; advances the counter. Call once per forward pass, before it.
   * @throws ModelError when `n` is not a positive integer.
   */
  reserve(n: number): number[] {
    if (!Number.isInteger(n) || n < 1) throw new ModelError(`cannot reserve ${n} positions; need a positive integer`, { field: 'n' });
    const out = Array.from({ length: n }, (_, i) => this.nextPosition + i);
    this.reserved = Int32Array.from(out);
    this.nextPosition += n;
    this.sinceCompress += n;
    return out;
  }

  /** {@inheritDoc AttentionHooks.append} */
  append(layer: number, keys: T, values: T, positions: Int32Array): LayerCache<T> {
    this.check(layer);
    const k = this.kernels;
    const h = this.options.kvHeads;
    const n = positions.length;
    const pos = new Int32Array(h * n);
    for (let i = 0; i < h; i++) pos.set(positions, i * n);
    const old = this.caches[layer];
    let next: LayerCache<T>;
    if (!old) {
      // The first call builds the cache from this call's tensors; the contract's new-slot defaults apply.
      next = {
        keys,
        values,
        positions: k.fromHost(hostTensor('int32', [h, n], pos)),
        counts: k.fromHost(hostTensor('int32', [h, n], new Int32Array(h * n).fill(1))),
        scores: k.fromHost(hostTensor('float32', [h, n])),
      };
    } else if (this.inPlace && appendInPlace(k, old, keys, values, pos)) {
      // The token went into the spare row an in-place step left: no copy of the cache.
      k.dispose(keys, values);
      next = old;
    } else {
      // A cache edited in place goes back in position order before a functional append.
      const base = this.inPlace ? compactLayer(k, old) : old;
      const posT = k.fromHost(hostTensor('int32', [h, n], pos));
      try {
        next = k.append(base, keys, values, posT);
      } finally {
        k.dispose(posT);
        if (base !== old) disposeLayer(k, base);
      }
      disposeLayer(k, old, next);
      const held = new Set([next.keys, next.values]);
      k.dispose(...[keys, values].filter((t) => !held.has(t)));
    }
    this.install(layer, next);
    return next;
  }

  /**
   * Replace layer `layer`'s cache with `next`, which the model built from the current one itself (an ONNX
   * decoder's `present` tensors already hold the kept slots and this call's, so there is nothing to
   * append): the cache the next forward pass attends over. Tensors of the current cache that `next` does
   * not hold are released, and the manager owns `next` from now on. Call it, like {@link append}, after
   * {@link reserve} and before {@link compress}.
   * @throws ModelError for a layer outside the model, or keys that are not `[kvHeads, *, headDim]`.
   */
  replace(layer: number, next: LayerCache<T>): void {
    this.check(layer);
    this.inPlace = false;
    const old = this.caches[layer];
    if (old) disposeLayer(this.kernels, old, next);
    this.install(layer, next);
  }

  /** Make `next` layer `layer`'s cache after checking its shape against the model's. */
  private install(layer: number, next: LayerCache<T>): void {
    const { kvHeads: h, headDim } = this.options;
    const ks = this.kernels.shapeOf(next.keys);
    if (ks[0] !== h || ks[2] !== headDim) throw new ModelError(`layer ${layer}: cache keys [${ks.join(', ')}] do not match [${h}, *, ${headDim}]`, { layer });
    this.caches[layer] = next;
    this.updatePeak();
  }

  /** {@inheritDoc AttentionHooks.record} */
  record(layer: number, observed: Observation<T>): void {
    this.check(layer);
    this.disposeObservation(layer);
    this.pending[layer] = observed;
  }

  /**
   * Run the policy on every layer: `prefill` at the first call (the budget is resolved against the
   * tokens seen so far, which is the prompt), `step` afterwards. Without a policy it only drops the
   * observations. Observations are disposed either way.
   * @throws BudgetError (from `resolveBudget` or the guard) and whatever typed error the policy throws.
   */
  async compress(): Promise<void> {
    if (this.disposed) throw new ModelError('the cache manager was disposed', { reason: 'disposed' });
    const newTokens = this.sinceCompress;
    const step = this.calls;
    if (step === 0) this.prompt = newTokens;
    try {
      if (!this.policy || newTokens === 0) return;
      if (step === 0) this.resolvedBudget = resolveBudget(this.options.budget ?? 1, newTokens);
      const budget = this.resolvedBudget!;
      for (let li = 0; li < this.caches.length; li++) {
        const layer = this.caches[li];
        if (!layer) throw new ModelError(`layer ${li} has no cache; run a forward pass before compressing`, { layer: li });
        const ctx = createContext({
          kernels: this.kernels,
          budget,
          promptLength: this.prompt,
          layerIndex: li,
          layerCount: this.caches.length,
          step,
          newTokens,
          seed: this.options.seed ?? 0,
          logger: this.logger,
          inPlace: this.inPlace,
        });
        const observed = this.observation(li, layer);
        const next = step === 0 ? await this.policy.prefill(layer, observed, ctx) : await this.policy.step(layer, observed, ctx);
        if (this.checkResults) {
          try {
            checkLayer(this.kernels, next, `${this.policy.name}.${step === 0 ? 'prefill' : 'step'} result (layer ${li})`, true);
          } catch (e) {
            disposeLayer(this.kernels, next, layer);
            throw e;
          }
        }
        if (next !== layer) disposeLayer(this.kernels, layer, next);
        this.caches[li] = next;
        this.disposeObservation(li);
      }
      this.updatePeak();
      this.logger.debug('cache compressed', { step, policy: this.policy.name, budget, lengths: this.lengths() });
    } finally {
      for (let li = 0; li < this.pending.length; li++) this.disposeObservation(li);
      if (newTokens > 0) {
        this.calls++;
        this.sinceCompress = 0;
      }
    }
  }

  /** Current cache of a layer (owned by the manager; do not dispose). */
  layer(index: number): LayerCache<T> | undefined {
    this.check(index);
    return this.caches[index];
  }

  /** Slots per layer (0 for a layer not yet filled); a spare row left by an in-place step is not a slot. */
  lengths(): number[] {
    return this.caches.map((c) => (c ? liveLength(this.kernels, c) : 0));
  }

  /** Bytes the caches hold now (keys, values, positions, counts, scores; a spare row included). */
  bytes(): number {
    const per = slotBytes(this.options.headDim) * this.options.kvHeads;
    return this.caches.reduce((s, c) => s + (c ? cacheShape(this.kernels, c).length : 0) * per, 0);
  }

  /** Largest {@link bytes} seen so far (measured after every append and every compression). */
  get peakBytes(): number {
    return this.peak;
  }

  /** Copy every layer's cache to host memory (for tests and inspection), its slots in position order. */
  async snapshot(): Promise<HostLayer[]> {
    return Promise.all(
      this.caches.map(async (c, i) => {
        if (!c) throw new ModelError(`layer ${i} has no cache yet`, { layer: i });
        const ordered = compactLayer(this.kernels, c);
        try {
          return await layerToHost(this.kernels, ordered);
        } finally {
          if (ordered !== c) disposeLayer(this.kernels, ordered);
        }
      }),
    );
  }

  /** Release every cache and pending observation. Safe to call twice. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (let li = 0; li < this.caches.length; li++) {
      this.disposeObservation(li);
      const c = this.caches[li];
      if (c) disposeLayer(this.kernels, c);
      this.caches[li] = undefined;
    }
  }

  /**
   * What the policy of layer `li` receives: the model's observation, with the attention it did not compute
   * observed by the `observe` kernel over `layer` from its queries at this call's positions, and without
   * what the policy does not need (released here). The manager keeps ownership.
   */
  private observation(li: number, layer: LayerCache<T>): Observation<T> {
    const got = this.pending[li] ?? {};
    const wantAttention = this.needs.has('attention') && got.attention === undefined;
    const wantLast = this.needs.has('lastAttention') && got.lastAttention === undefined;
    let out: Observation<T> = { ...got };
    if ((wantAttention || wantLast) && got.queries !== undefined) {
      const k = this.kernels;
      const qp = k.fromHost(hostTensor('int32', [this.reserved.length], this.reserved));
      try {
        const o = k.observe(layer, got.queries, qp, { groupReduction: this.groupReduction, proportional: this.proportional });
        if (!wantAttention) k.dispose(o.attention);
        if (!wantLast) k.dispose(o.lastAttention);
        out = { ...out, ...(wantAttention ? { attention: o.attention } : {}), ...(wantLast ? { lastAttention: o.lastAttention } : {}) };
      } finally {
        k.dispose(qp);
      }
    }
    const unused = (['attention', 'lastAttention', 'queries'] as const).filter((f) => !this.needs.has(f) && out[f] !== undefined);
    if (unused.length > 0) {
      this.kernels.dispose(...unused.map((f) => out[f]));
      out = Object.fromEntries(Object.entries(out).filter(([f]) => !unused.includes(f as (typeof unused)[number])));
    }
    this.pending[li] = out;
    return out;
  }

  private updatePeak(): void {
    this.peak = Math.max(this.peak, this.bytes());
  }

  private disposeObservation(layer: number): void {
    const o = this.pending[layer];
    if (o) this.kernels.dispose(o.attention, o.lastAttention, o.queries);
    this.pending[layer] = undefined;
  }

  private check(layer: number): void {
    if (this.disposed) throw new ModelError('the cache manager was disposed', { reason: 'disposed' });
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.caches.length) {
      throw new ModelError(`layer ${layer} is outside 0..${this.caches.length - 1}`, { field: 'layer', allowed: `0..${this.caches.length - 1}` });
    }
  }
}
