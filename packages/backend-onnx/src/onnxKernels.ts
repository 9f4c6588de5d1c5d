import { ArgCheck, BufferPool, ConfigError, DEFAULT_POOL_BYTES, defineKernelBackend, hostTensor, type KernelBackend, type KVKernels } from '@kvfold/core';
import { ort } from './ort.js';
import { SessionCache } from './cache.js';
import { accumulate } from './kernels/accumulate.js';
import { accumulateTopK, type AccumulatedSelection } from './kernels/accumulateTopK.js';
import { adjacentCosine } from './kernels/adjacentCosine.js';
import { allFinite } from './kernels/allFinite.js';
import { append } from './kernels/append.js';
import { gather } from './kernels/gather.js';
import { keyNorms } from './kernels/keyNorms.js';
import { mergeIntoNeighbours } from './kernels/mergeIntoNeighbours.js';
import { mergeSegments } from './kernels/mergeSegments.js';
import { OBSERVE_BLOCK, observe } from './kernels/observe.js';
import { topK } from './kernels/topK.js';
import { linkSegments } from './kernels/linkSegments.js';
import { mergeSimilar } from './kernels/mergeSimilar.js';
import type { SessionFactory } from './session.js';
import { hostView, inspectTensor, type OnnxTensor } from './tensor.js';

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

/** What the onnx backend adds to `KVKernels`: its runtime info, a fused H2O kernel and diagnostics. */
export interface OnnxExtensions {
  /** What runs (provider, kernel path, fallbacks taken). */
  readonly info: OnnxRuntimeInfo;
  /**
   * Fused H2O step (`ai.kvfold::AccumulateSelect`): `scores + attention` and the topK of the result over
   * `[from, to)` in one kernel call. Equal to `accumulate` followed by `topK`; not part of KVKernels.
   */
  accumulateTopK(scores: OnnxTensor, attention: OnnxTensor, k: number, from: number, to: number): AccumulatedSelection;
  /**
   * How many times the native `ai.kvfold` kernels ran in this process (undefined on the function-body
   * path). Diagnostics: it proves ORT picked the registered kernels over the function bodies.
   */
  nativeKernelCalls(): number | undefined;
  /**
   * Layer outputs (keys and values) of at least this many bytes are written by the native CPU kernels with
   * non-temporal stores, past the cache: such an output cannot stay cached until attention reads it, and
   * ordinary stores first read every output line they fill. By default the last-level cache's size.
   * Process-wide (one custom-op library per process). Pass `bytes` (an integer >= 0) to set it, e.g. 0 to
   * stream every output; returns the value in force before the call, or undefined on the function-body path
   * (which has no threshold).
   */
  nativeStreamingMinBytes(bytes?: number): number | undefined;
  /** Sessions loaded so far, as `kernel:dtype` keys (diagnostics: one per kernel variant, never one per shape). */
  loadedKernels(): string[];
  /** Release every ORT session; the kernels create them again if used afterwards. */
  release(): void;
  /** Where uploads and layer outputs take their memory (buffers of disposed tensors; see `poolBytes`). */
  readonly pool: BufferPool;
}

/**
 * KVKernels on onnxruntime-node. Tensors are `ort.Tensor` (CPU); each kernel is a small ONNX model with
 * symbolic dims, loaded once on first use. The fused kernels are `ai.kvfold` custom ops.
 */
export type OnnxKernels = KVKernels<OnnxTensor> & OnnxExtensions;

/** `describe()` of an onnx backend with `info`. */
function describeInfo(info: OnnxRuntimeInfo): string {
  const name = (p: KernelPath) =>
    p === 'function-bodies' ? 'ai.kvfold function bodies' : p === 'native-cuda' ? 'ai.kvfold native CUDA kernels' : 'ai.kvfold native CPU kernels';
  const obs = info.observePath !== info.kernelPath ? `; observe: ${info.observePath === 'function-bodies' ? 'function body' : name(info.observePath)}` : '';
  return `onnx (onnxruntime-node ${info.onnxruntimeNode}, ${info.executionProvider} EP, ${name(info.kernelPath)}${obs})`;
}

/**
 * The onnx backend as core binds it: ORT CPU tensors and one implementation per kernel
 * (`src/kernels/*.ts`), each a session of a small model. `createOnnxKernels` picks the provider and kernel
 * path, probes them and binds this.
 * @param factory creates every kernel session (onnxruntime-node's own, or the native addon's).
 * @param info what runs (provider, kernel path, fallbacks taken).
 * @param observeBlock largest logits block (elements) one function-body observe call materialises.
 * @param observeFactory sessions for `observe` when it runs on another path than the other kernels.
 */
export function onnxKernelBackend(
  factory: SessionFactory,
  info: OnnxRuntimeInfo,
  observeBlock: number = OBSERVE_BLOCK,
  observeFactory?: SessionFactory,
  poolBytes: number = DEFAULT_POOL_BYTES,
): KernelBackend<OnnxTensor> {
  // Uploads and layer outputs take their memory from the buffers of disposed tensors (see BufferPool).
  const pool = new BufferPool(poolBytes);
  const cache = new SessionCache(factory, pool);
  const observeCache = observeFactory ? new SessionCache(observeFactory, pool) : cache;
  const check = new ArgCheck(inspectTensor);
  const extensions: OnnxExtensions = {
    info,
    accumulateTopK: (scores, attention, k, from, to) => accumulateTopK(cache, check, scores, attention, k, from, to),
    nativeKernelCalls: () => factory.nativeKernelCalls?.(),
    nativeStreamingMinBytes: (bytes) => {
      if (bytes !== undefined && !(Number.isSafeInteger(bytes) && bytes >= 0)) {
        throw new ConfigError([{ path: '/bytes', rule: 'minimum', message: `must be an integer >= 0, got ${String(bytes)}`, allowed: { minimum: 0, type: 'integer' } }], 'nativeStreamingMinBytes');
      }
      const previous = factory.nativeStreamingMinBytes?.(bytes ?? -1);
      return previous === undefined || previous < 0 ? undefined : previous;
    },
    loadedKernels: () => [...new Set([...cache.keys(), ...observeCache.keys()])],
    release: () => {
      cache.releaseAll();
      observeCache.releaseAll();
    },
    pool,
  };
  return defineKernelBackend<OnnxTensor>({
    name: 'onnx',
    describe: () => describeInfo(info),
    inspect: inspectTensor,
    // A copy: the caller keeps ownership of its array, and the handle never aliases host memory.
    fromHost: ({ dtype, shape, data }) => {
      const copy = dtype === 'float32' ? pool.float32(data.length) : pool.int32(data.length);
      copy.set(data);
      return dtype === 'float32' ? new ort.Tensor('float32', copy as Float32Array, [...shape]) : new ort.Tensor('int32', copy as Int32Array, [...shape]);
    },
    toHost: async (tensor) => hostTensor(tensor.type as 'float32' | 'int32', [...tensor.dims], (tensor.data as Float32Array | Int32Array).slice()),
    // CPU tensors: the view is the tensor's own buffer.
    read: hostView,
    // Every tensor owns its buffer (uploads copy, outputs get their own), so a decode step may edit a cache in place.
    writable: true,
    dispose: (tensors) => {
      for (const t of tensors) {
        if (!(t instanceof ort.Tensor) || t.location === 'none') continue;
        const data = t.type === 'float32' || t.type === 'int32' ? (t.data as Float32Array | Int32Array) : undefined;
        t.dispose();
        // Only buffers the pool handed out go back (an ORT-allocated output is left to the garbage collector).
        if (data) pool.release(data);
      }
    },
    kernels: {
      allFinite: allFinite(cache),
      append: append(cache),
      accumulate: accumulate(cache),
      topK: topK(cache),
      gather: gather(cache),
      adjacentCosine: adjacentCosine(cache),
      keyNorms: keyNorms(cache),
      linkSegments: linkSegments(cache),
      mergeSegments: mergeSegments(cache),
      mergeSimilar: mergeSimilar(cache),
      mergeIntoNeighbours: mergeIntoNeighbours(cache),
      // Native kernels work row by row; only the function bodies materialise the whole logits block.
      observe: observe(observeCache, info.observePath === 'function-bodies' ? observeBlock : Infinity),
    },
    extensions: extensions as unknown as Readonly<Record<string, unknown>>,
  });
}
