import {
  DTypeError,
  hostTensor,
  ShapeError,
  sizeOf,
  type DType,
  type HostTensor,
  type KVKernels,
  type LayerCache,
  type NeighbourMergePlan,
  type ObservedAttention,
  type ObserveOptions,
  type SegmentPlan,
} from '@kvfold/core';
import { ort } from './ort.js';
import { SessionCache } from './cache.js';
import { accumulate } from './kernels/accumulate.js';
import { accumulateTopK, type AccumulatedSelection } from './kernels/accumulateTopK.js';
import { adjacentCosine } from './kernels/adjacentCosine.js';
import { allFinite } from './kernels/allFinite.js';
import { append } from './kernels/append.js';
import { gather } from './kernels/gather.js';
import { mergeIntoNeighbours } from './kernels/mergeIntoNeighbours.js';
import { mergeSegments } from './kernels/mergeSegments.js';
import { OBSERVE_BLOCK, observe } from './kernels/observe.js';
import { topK } from './kernels/topK.js';
import type { SessionFactory } from './session.js';
import type { OnnxTensor } from './validate.js';

/** Which implementation of the `ai.kvfold` custom ops runs. */
export type KernelPath = 'function-bodies' | 'native-cpu' | 'native-cuda';

/** What an {@link OnnxKernels} instance actually runs on. */
export interface OnnxRuntimeInfo {
  /** Installed onnxruntime-node version. */
  readonly onnxruntimeNode: string;
  /** Execution provider in use (after any fallback). */
  readonly executionProvider: 'cpu' | 'cuda';
  /** `function-bodies` (stock ORT inlines the ops' ONNX bodies) or the native kernels of the project's library. */
  readonly kernelPath: KernelPath;
  /** What runs `observe`: on CPU the function body (an MLAS GEMM) beats the native loop, so it stays the default there. */
  readonly observePath: KernelPath;
  /** Why a requested provider or native library is not in use (empty when everything requested runs). */
  readonly fallbacks: readonly string[];
}

/**
 * KVKernels on onnxruntime-node. Tensors are `ort.Tensor` (CPU); each kernel is a small ONNX model with
 * symbolic dims, loaded once on first use. The fused kernels are `ai.kvfold` custom ops.
 */
export class OnnxKernels implements KVKernels<OnnxTensor> {
  /** Registry name. */
  readonly backend = 'onnx';
  private readonly cache: SessionCache;
  private readonly observeCache: SessionCache;

  /**
   * Use `createOnnxKernels`, which picks the provider and kernel path and probes them; this
   * constructor takes those decisions as given.
   * @param factory creates every kernel session (onnxruntime-node's own, or the native addon's).
   */
  constructor(
    private readonly factory: SessionFactory,
    /** What runs (provider, kernel path, fallbacks taken). */
    readonly info: OnnxRuntimeInfo,
    /** Largest logits block (elements) one function-body observe call materialises. */
    private readonly observeBlock: number = OBSERVE_BLOCK,
    /** Sessions for `observe` when it runs on another path than the other kernels (see {@link OnnxRuntimeInfo.observePath}). */
    observeFactory?: SessionFactory,
  ) {
    this.cache = new SessionCache(factory);
    this.observeCache = observeFactory ? new SessionCache(observeFactory) : this.cache;
  }

  describe(): string {
    const name = (p: KernelPath) =>
      p === 'function-bodies' ? 'ai.kvfold function bodies' : p === 'native-cuda' ? 'ai.kvfold native CUDA kernels' : 'ai.kvfold native CPU kernels';
    const obs = this.info.observePath !== this.info.kernelPath ? `; observe: ${this.info.observePath === 'function-bodies' ? 'function body' : name(this.info.observePath)}` : '';
    return `onnx (onnxruntime-node ${this.info.onnxruntimeNode}, ${this.info.executionProvider} EP, ${name(this.info.kernelPath)}${obs})`;
  }

  fromHost(tensor: HostTensor): OnnxTensor {
    if (typeof tensor !== 'object' || tensor === null || !Array.isArray(tensor.shape)) {
      throw new ShapeError('fromHost expects a HostTensor { dtype, shape, data }', { field: 'tensor' });
    }
    const { dtype, shape, data } = tensor;
    if (dtype !== 'float32' && dtype !== 'int32') throw new DTypeError('fromHost tensor', String(dtype), ['float32', 'int32']);
    const ok = dtype === 'float32' ? data instanceof Float32Array : data instanceof Int32Array;
    if (!ok) throw new DTypeError('fromHost tensor.data', (data as object | undefined)?.constructor?.name ?? typeof data, [dtype === 'float32' ? 'Float32Array' : 'Int32Array']);
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new ShapeError(`fromHost: invalid dimension ${d} in shape [${shape.join(', ')}]`, { field: 'tensor.shape', shape });
    }
    if (data.length !== sizeOf(shape)) {
      throw new ShapeError(`fromHost: data holds ${data.length} elements but shape [${shape.join(', ')}] needs ${sizeOf(shape)}`, { field: 'tensor.data' });
    }
    // A copy: the caller keeps ownership of its array, and the handle never aliases host memory.
    return dtype === 'float32'
      ? new ort.Tensor('float32', (data as Float32Array).slice(), [...shape])
      : new ort.Tensor('int32', (data as Int32Array).slice(), [...shape]);
  }

  async toHost(tensor: OnnxTensor): Promise<HostTensor> {
    const dtype = this.dtypeOf(tensor);
    if (tensor.location === 'none') throw new ShapeError('toHost: the tensor was disposed', { field: 'tensor' });
    const data = dtype === 'float32' ? (tensor.data as Float32Array).slice() : (tensor.data as Int32Array).slice();
    return hostTensor(dtype, [...tensor.dims], data);
  }

  shapeOf(tensor: OnnxTensor): readonly number[] {
    if (!(tensor instanceof ort.Tensor)) throw new ShapeError('shapeOf: not an onnx-backend tensor (ort.Tensor)', { field: 'tensor' });
    return tensor.dims;
  }

  dtypeOf(tensor: OnnxTensor): DType {
    if (!(tensor instanceof ort.Tensor)) throw new ShapeError('dtypeOf: not an onnx-backend tensor (ort.Tensor)', { field: 'tensor' });
    if (tensor.type !== 'float32' && tensor.type !== 'int32') throw new DTypeError('tensor', tensor.type, ['float32', 'int32']);
    return tensor.type;
  }

  dispose(...tensors: readonly (OnnxTensor | undefined)[]): void {
    for (const t of tensors) {
      if (t instanceof ort.Tensor && t.location !== 'none') t.dispose();
    }
  }

  async allFinite(tensor: OnnxTensor, bound?: number): Promise<boolean> {
    return allFinite(this.cache, tensor, bound);
  }

  append(layer: LayerCache<OnnxTensor>, keys: OnnxTensor, values: OnnxTensor, positions: OnnxTensor): LayerCache<OnnxTensor> {
    return append(this.cache, layer, keys, values, positions);
  }

  accumulate(scores: OnnxTensor, attention: OnnxTensor): OnnxTensor {
    return accumulate(this.cache, scores, attention);
  }

  topK(scores: OnnxTensor, k: number, from: number, to: number): OnnxTensor {
    return topK(this.cache, scores, k, from, to);
  }

  /**
   * Fused H2O step (`ai.kvfold::AccumulateSelect`): `scores + attention` and the topK of the result over
   * `[from, to)` in one kernel call. Equal to `accumulate` followed by `topK`; not part of KVKernels.
   */
  accumulateTopK(scores: OnnxTensor, attention: OnnxTensor, k: number, from: number, to: number): AccumulatedSelection {
    return accumulateTopK(this.cache, scores, attention, k, from, to);
  }

  gather(layer: LayerCache<OnnxTensor>, index: OnnxTensor): LayerCache<OnnxTensor> {
    return gather(this.cache, layer, index);
  }

  adjacentCosine(keys: OnnxTensor): OnnxTensor {
    return adjacentCosine(this.cache, keys);
  }

  mergeSegments(layer: LayerCache<OnnxTensor>, plan: SegmentPlan<OnnxTensor>): LayerCache<OnnxTensor> {
    return mergeSegments(this.cache, layer, plan);
  }

  mergeIntoNeighbours(layer: LayerCache<OnnxTensor>, plan: NeighbourMergePlan<OnnxTensor>): LayerCache<OnnxTensor> {
    return mergeIntoNeighbours(this.cache, layer, plan);
  }

  observe(layer: LayerCache<OnnxTensor>, queries: OnnxTensor, queryPositions: OnnxTensor, options?: ObserveOptions): ObservedAttention<OnnxTensor> {
    // Native kernels work row by row; only the function bodies materialise the whole logits block.
    const block = this.info.observePath === 'function-bodies' ? this.observeBlock : Infinity;
    return observe(this.observeCache, layer, queries, queryPositions, options, block);
  }

  /**
   * How many times the native `ai.kvfold` kernels ran in this process (undefined on the function-body
   * path). Diagnostics: it proves ORT picked the registered kernels over the function bodies.
   */
  nativeKernelCalls(): number | undefined {
    return this.factory.nativeKernelCalls?.();
  }

  /** Sessions loaded so far, as `kernel:dtype` keys (diagnostics: one per kernel variant, never one per shape). */
  loadedKernels(): string[] {
    return [...new Set([...this.cache.keys(), ...this.observeCache.keys()])];
  }

  /** Release every ORT session; the object creates them again if used afterwards. */
  release(): void {
    this.cache.releaseAll();
    this.observeCache.releaseAll();
  }
}
