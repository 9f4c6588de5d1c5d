import { ConfigError } from './errors.js';
import type { DType, HostTensor } from './tensor.js';

/**
 * The cache of one layer for one sequence, as tensor handles of a backend.
 *
 * Slots are sorted by `positions` along the length axis. Every field has the same `[kvHeads, length]`
 * leading dimensions; heads may keep different tokens but always the same number of slots.
 */
export interface LayerCache<T> {
  /** Post-RoPE keys, float32 `[kvHeads, length, headDim]`. */
  readonly keys: T;
  /** Values, float32 `[kvHeads, length, headDim]`. */
  readonly values: T;
  /** Original token index of each slot (a merged slot keeps its pivot's), int32 `[kvHeads, length]`. */
  readonly positions: T;
  /** How many original tokens a slot stands for (1 = unmerged), int32 `[kvHeads, length]`. */
  readonly counts: T;
  /** Accumulated attention each slot received (the policies' score state), float32 `[kvHeads, length]`. */
  readonly scores: T;
}

/** Dimensions of a {@link LayerCache}. */
export interface CacheShape {
  /** Number of key/value heads. */
  readonly heads: number;
  /** Number of slots per head. */
  readonly length: number;
  /** Dimension of each key and value vector. */
  readonly headDim: number;
}

/** How the query heads of one GQA group are reduced to their shared kv head. */
export type GroupReduction = 'mean' | 'max' | 'sum';

/** Options of {@link KVKernels.observe}. */
export interface ObserveOptions {
  /** Reduction over the query heads sharing a kv head. Default `mean`. */
  readonly groupReduction?: GroupReduction;
  /** Logit scale; default `1 / sqrt(headDim)`. */
  readonly scale?: number;
  /** Add `log(count)` to the logit of each slot (proportional attention for merged slots). Default false. */
  readonly proportional?: boolean;
}

/**
 * What {@link KVKernels.observe} returns: attention seen by the cache, reduced to kv-head granularity. The
 * fields have the names of the {@link Observation} a policy receives, so a result passes through as is.
 */
export interface ObservedAttention<T> {
  /** Sum over the given queries of the softmax probability each slot received, float32 `[kvHeads, length]`. */
  readonly attention: T;
  /** Probabilities from the last query alone, float32 `[kvHeads, length]`. */
  readonly lastAttention: T;
}

/** Whether a kernel runs as the backend's own implementation or as the reference through the host. */
export interface KernelInfo {
  /** Kernel name. */
  readonly name: string;
  /** `backend`: the backend implements it; `reference`: the reference runs on host copies (the reference backend's own path). */
  readonly runs: 'backend' | 'reference';
}

/**
 * Plan for {@link KVKernels.mergeSegments}: a partition of each head's slots into runs of consecutive
 * slots, each run collapsing to one output slot.
 */
export interface SegmentPlan<T> {
  /**
   * Output slot of each input slot, int32 `[kvHeads, length]`. Within a head, the ids of kept slots are
   * non-decreasing and cover `0..outLength-1` with no gap; `-1` drops the slot (evicted, no merge).
   */
  readonly segment: T;
  /** Input slot index of each output slot's pivot (must be a member of the run), int32 `[kvHeads, outLength]`. */
  readonly pivot: T;
  /**
   * Gaussian-kernel bandwidth per output slot, float32 `[kvHeads, outLength]` (strictly positive).
   * Member weight `g_i = exp(-||k_p - k_i||^2 / (2 sigma^2))`, pivot `g_p = 1`, `w_i = g_i / sum g`.
   */
  readonly sigma: T;
  /**
   * `count`: merged value = `C * sum_i w_i (v_i / c_i)` with `c_i` the member counts and `C = sum c_i`
   * (the paper's `|S| * sum w_i v_i` when every `c_i` is 1). `none`: merged value = `sum_i w_i v_i`.
   */
  readonly valueScale: 'count' | 'none';
}

/**
 * Plan for {@link KVKernels.mergeSimilar}: KVMerger's exact budget, with the links chosen by the kernel from the
 * keys it reads.
 */
export interface SimilarMergePlan<T> {
  /** Slots that never merge, int32 `[kvHeads, n]` (any order, repeats allowed, `n` may be 0). */
  readonly protect: T;
  /** Links each head merges (its output keeps `length - count` slots), an integer in `[0, max(0, length - 1)]`. */
  readonly count: number;
  /** Links whose cosine is below this rank as ineligible. */
  readonly minSimilarity: number;
  /** Gaussian bandwidth of every merged slot (a {@link SegmentPlan.sigma} of this one value), finite and > 0. */
  readonly sigma: number;
  /** As {@link SegmentPlan.valueScale}. */
  readonly valueScale: 'count' | 'none';
}

/** What {@link KVKernels.mergeSimilar} returns (the caller owns and disposes all three). */
export interface SimilarMerge<T> {
  /** The merged layer, `length - count` slots per head. */
  readonly layer: LayerCache<T>;
  /**
   * Eligible links of each head, int32 `[kvHeads]`. A head with fewer than `count` merged ineligible links too
   * (lowest slot first): KVMerger then plans that layer another way and drops this result.
   */
  readonly eligible: T;
  /** The lowest cosine among each head's merged links, float32 `[kvHeads]` (+Infinity when `count` is 0). */
  readonly lowest: T;
}

/**
 * Plan for {@link KVKernels.mergeIntoNeighbours} (CaM): keep some slots, and add the values of evicted
 * slots to a window of kept neighbours before dropping them.
 */
export interface NeighbourMergePlan<T> {
  /** Input slots kept, ascending, int32 `[kvHeads, kept]`. */
  readonly keep: T;
  /** Input slots whose value is merged before being dropped, int32 `[kvHeads, sources]`. */
  readonly source: T;
  /** Index into `keep` of the first target of each source, int32 `[kvHeads, sources]`. */
  readonly targetStart: T;
  /** Number of consecutive kept targets of each source (0 = no merge), int32 `[kvHeads, sources]`. */
  readonly targetCount: T;
  /** Gate weight of each source (0 or 1 for CaM's Bernoulli draw; any weight in [0, 1] allowed), float32 `[kvHeads, sources]`. */
  readonly gate: T;
}

/**
 * The whole kernel surface a policy may use, for a backend's tensor type `T`; a policy sees only opaque
 * handles, so the same policy runs on every backend. Core builds it from a backend's {@link KernelBackend}
 * with {@link bindKernels}: every kernel call is validated once, by the kernel's definition, then runs the
 * backend's implementation, or the reference on host copies when the backend has none.
 *
 * Contract shared by every kernel:
 * - inputs are never mutated; outputs are new tensors that the caller owns and must {@link dispose};
 * - results equal the reference backend's within 1e-5 relative error (float32);
 * - ties in rankings go to the lower slot index;
 * - bad arguments throw the same typed error with the same message on every backend.
 */
export interface KVKernels<T = unknown> {
  /** Registry name of the backend (`reference`, `tfjs`, `onnx`, ...). */
  readonly backend: string;
  /** Human-readable description of what actually runs (engine, execution provider, native or not). */
  describe(): string;

  /** Copy a host tensor into the backend. */
  fromHost(tensor: HostTensor): T;
  /** Copy a tensor back to host memory. */
  toHost(tensor: T): Promise<HostTensor>;
  /** Dimensions of a tensor. */
  shapeOf(tensor: T): readonly number[];
  /** Element type of a tensor. */
  dtypeOf(tensor: T): DType;
  /** Release tensors. Disposing a handle twice, or `undefined`, is harmless. */
  dispose(...tensors: readonly (T | undefined)[]): void;

  /**
   * True when every element is finite (no NaN, no infinity); int32 tensors always are. With `bound` (a
   * power of two from 2 to 2^127), a float32 element must also be smaller than `bound` in magnitude: the
   * test is exact on every backend, since a float32 `x * 2^(128 - log2 bound)` overflows exactly when
   * `|x| >= bound`. With `from` (an integer slot of axis 1), only slots `from..` of every row of axis 0
   * are tested: the newest slots of every head of a `[heads, length, ...]` cache, which is how the guard
   * scans what a decode step appended without gathering it.
   */
  allFinite(tensor: T, bound?: number, from?: number): Promise<boolean>;

  /**
   * Append `n` new tokens to every head: keys and values `[kvHeads, n, headDim]`, positions int32
   * `[kvHeads, n]`. New slots get count 1 and score 0.
   */
  append(layer: LayerCache<T>, keys: T, values: T, positions: T): LayerCache<T>;

  /** Element-wise `scores + attention`, both float32 `[kvHeads, length]` (H2O's score update). */
  accumulate(scores: T, attention: T): T;

  /**
   * Indices of the `k` highest scores of each head among slots `[from, to)` (`to` exclusive), sorted
   * ascending by slot index, int32 `[kvHeads, k]`. Requires `0 <= from <= to <= length` and `k <= to - from`.
   */
  topK(scores: T, k: number, from: number, to: number): T;

  /** Gather slots (every field of the layer) at int32 `index [kvHeads, k]`. */
  gather(layer: LayerCache<T>, index: T): LayerCache<T>;

  /** Cosine similarity of each key with the next one, float32 `[kvHeads, length - 1]` (0 when a norm is 0). */
  adjacentCosine(keys: T): T;

  /** L2 norm of each key, float32 `[kvHeads, length]` (Knorm's score). */
  keyNorms(keys: T): T;

  /**
   * The `segment` and `pivot` of a {@link SegmentPlan} whose runs are joined by each head's merged links
   * (int32 `[kvHeads, count]`, strictly ascending within `[0, length - 2]`; link `i` joins slots `i` and
   * `i + 1`), nothing evicted: output slot ids from 0 in slot order, each run's pivot its highest `scores`
   * (float32 `[kvHeads, length]`) member, ties to the lower slot, NaN lowest. Every head keeps `length - count` slots.
   */
  linkSegments(links: T, scores: T): Pick<SegmentPlan<T>, 'segment' | 'pivot'>;

  /**
   * Collapse runs of consecutive slots into one slot each (KVMerger): key = weighted sum of member
   * keys, value per {@link SegmentPlan.valueScale}, position = pivot's, count = sum of member counts,
   * score = sum of member scores.
   */
  mergeSegments(layer: LayerCache<T>, plan: SegmentPlan<T>): LayerCache<T>;

  /**
   * KVMerger's exact-budget merge in one call: per head, the {@link adjacentCosine} of the keys; each link
   * eligible when neither of its slots is in `plan.protect` and its cosine is finite and `>= minSimilarity`; the
   * `count` best links by cosine, ineligible ones ranked lowest ({@link topK}); their runs
   * ({@link linkSegments} by the layer's scores) merged as {@link mergeSegments} merges them, with every sigma
   * `plan.sigma`. Exactly that chain, which a backend can run head by head with the keys still in cache.
   */
  mergeSimilar(layer: LayerCache<T>, plan: SimilarMergePlan<T>): SimilarMerge<T>;

  /**
   * CaM value merge: gather the kept slots, then for each source `s` with `targetCount > 0`, add
   * `gate[s] * v[source[s]] / targetCount[s]` to the values of kept slots
   * `targetStart[s] .. targetStart[s] + targetCount[s] - 1`. Keys, positions, counts and scores are gathered unchanged.
   */
  mergeIntoNeighbours(layer: LayerCache<T>, plan: NeighbourMergePlan<T>): LayerCache<T>;

  /**
   * Causal softmax attention of `queries` (float32 `[queryHeads, n, headDim]`, queryHeads a multiple of
   * kvHeads, query head `q` belongs to kv head `floor(q / (queryHeads / kvHeads))`) over the cache,
   * reduced to kv heads. A query at position `p` (int32 `queryPositions [n]`) sees slots whose position is `<= p`.
   */
  observe(layer: LayerCache<T>, queries: T, queryPositions: T, options?: ObserveOptions): ObservedAttention<T>;

  /**
   * Run a kernel by name: how a policy calls a kernel that a plugin defines (built-in kernels are the
   * methods above). The arguments are validated by the kernel's definition.
   * @throws UnknownKernelError when no kernel has that name.
   */
  run<R = unknown>(kernel: string, ...args: readonly unknown[]): R;

  /** Every kernel these kernels can run, and whether the backend implements it or the reference runs through the host. */
  kernels(): readonly KernelInfo[];

  /**
   * The tensor's own memory, writable, on backends whose tensors live in host memory and may change in
   * place, and stays valid while the tensor lives (reference, onnx on CPU); absent elsewhere. Only the
   * in-place decode path writes to a tensor's memory (see `evictInPlace` and {@link editView}), and only on
   * a cache its caller handed over (`PolicyContext.inPlace`): every kernel above still treats its inputs as
   * immutable. `selectSlots` and KVMerger read kernel results through it instead of downloading a copy.
   */
  hostView?(tensor: T): HostTensor;

  /**
   * The tensor's own memory for the in-place decode path (`PolicyContext.inPlace`), on every backend that
   * can edit a tensor in place: reference and onnx on CPU (the same memory as {@link hostView}) and tfjs
   * on its wasm engine (a view of its heap). Unlike `hostView`, the view is valid only until the next call
   * to these kernels or the next upload (a WebAssembly heap that grows moves): take it, use it, drop it.
   * With `write` true (the default), undefined when another tensor shares the memory (a tfjs reshape of
   * it); the in-place path then takes the functional one.
   */
  editView?(tensor: T, write?: boolean): HostTensor | undefined;
}

/** Read the dimensions of a layer cache. */
export function cacheShape<T>(kernels: KVKernels<T>, layer: LayerCache<T>): CacheShape {
  const [heads, length, headDim] = kernels.shapeOf(layer.keys);
  return { heads: heads ?? 0, length: length ?? 0, headDim: headDim ?? 0 };
}

/** The five tensors of a layer, in a fixed order. */
export function layerTensors<T>(layer: LayerCache<T>): T[] {
  return [layer.keys, layer.values, layer.positions, layer.counts, layer.scores];
}

/**
 * Dispose the tensors of `layer` that `keep` does not also hold. Use it to replace a cache with a
 * policy's result: `disposeLayer(k, old, next)` is safe even when the policy returned tensors of `old`.
 */
export function disposeLayer<T>(kernels: KVKernels<T>, layer: LayerCache<T>, keep?: LayerCache<T>): void {
  const kept = new Set<T>(keep ? layerTensors(keep) : []);
  kernels.dispose(...layerTensors(layer).filter((t) => !kept.has(t)));
}

/**
 * The factor `2^(128 - log2 bound)` with which {@link KVKernels.allFinite} scales float32 elements so that
 * exactly those of magnitude `>= bound` overflow to infinity.
 * @throws ConfigError when `bound` is not a power of two from 2 to 2^127.
 */
export function finiteBoundScale(bound: number): number {
  const e = Math.log2(bound);
  if (typeof bound !== 'number' || !Number.isInteger(e) || e < 1 || e > 127) {
    throw new ConfigError([{ path: '/bound', rule: 'enum', message: `must be a power of two from 2 to 2^127, got ${String(bound)}`, allowed: '2^1..2^127' }], 'allFinite');
  }
  return 2 ** (128 - e);
}
