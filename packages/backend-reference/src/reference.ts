import { availableParallelism } from 'node:os';
import {
  BufferPool,
  ConfigError,
  DEFAULT_POOL_BYTES,
  type ConfigIssue,
  bindKernels,
  defineBackend,
  defineKernelBackend,
  fmtShape,
  type BackendDefinition,
  type BindOptions,
  type HostTensor,
  type KernelBackend,
  type KVKernels,
  type TensorMeta,
} from '@kvfold/core';
import { wasmAdjacentCosine } from './kernels/adjacentCosine.js';
import { wasmGather } from './kernels/gather.js';
import { wasmMergeIntoNeighbours } from './kernels/mergeIntoNeighbours.js';
import { wasmMergeSegments } from './kernels/mergeSegments.js';
import { wasmTopK } from './kernels/topK.js';
import { wasmLinkSegments } from './kernels/linkSegments.js';
import { wasmMergeSimilar } from './kernels/mergeSimilar.js';
import { wasmAccumulate } from './kernels/accumulate.js';
import { KernelThreads, THREAD_MIN_BYTES } from '@kvfold/wasm-kernels';
import { WasmPool, wasmHeap, wasmUnavailable } from './wasm-heap.js';

/** A copy (shape and data), so no two owners ever share memory. */
function copyTensor(t: HostTensor): HostTensor {
  return { dtype: t.dtype, shape: [...t.shape], data: t.data.slice() } as HostTensor;
}

/** Options of the reference backend. */
export interface ReferenceBackendOptions {
  /**
   * Most bytes of disposed tensors kept for reuse by later kernel outputs and uploads (default 1 GiB;
   * 0 turns reuse off). Writing into memory touched before runs several times faster than into fresh
   * memory; see {@link BufferPool}. In wasm mode (the default) freed blocks always stay in the wasm heap
   * for reuse (wasm memory cannot shrink), so there only 0 changes anything: it selects the js mode.
   */
  readonly poolBytes?: number;
  /**
   * `wasm` (default): tensors live in one shared `WebAssembly.Memory` per process and accumulate,
   * adjacentCosine, gather, mergeSegments, mergeIntoNeighbours, topK, linkSegments and mergeSimilar run as WebAssembly (SIMD)
   * kernels on them in place: accumulate, adjacentCosine and gather bit-identical to the TypeScript reference (so KVMerger plans the
   * same), topK and linkSegments the same integers, the merges summed in float32 lanes, within 1e-5 of it
   * (the other kernels, and any call whose arrays are not in that memory, run the TypeScript). `js`: every kernel in plain TypeScript on ordinary typed
   * arrays, float64 accumulation: the ground truth. With `poolBytes: 0` (fresh memory per output) the
   * backend runs `js`.
   */
  readonly kernels?: 'wasm' | 'js';
  /**
   * Threads the wasm kernels run on, the calling thread included (default {@link defaultReferenceThreads}:
   * 2, or 1 on a one-core machine; at most {@link MAX_REFERENCE_THREADS}; 1 is the single-threaded mode).
   * With more than 1, a call large enough (see {@link threadMinBytes}) is split by heads between the caller
   * and `threads - 1` worker threads that run the same kernels over the same shared memory; the caller
   * waits for them, so the API stays synchronous, and results are bit-identical to one thread. The
   * workers are shared by the process's backends with the same count, start with the first split call,
   * never keep the process alive, and stop when the last such backend calls `close()` (or is garbage
   * collected). The `js` mode, the TypeScript kernels and the plan screens run on the calling thread.
   */
  readonly threads?: number;
  /**
   * Smallest call, in bytes of keys (`H * L * D * 4`), that {@link threads} splits (default
   * {@link THREAD_MIN_BYTES}, 4 MiB: below it the handoff to a worker costs more than it saves). topK
   * counts 64 bytes per score of its window (`H * (to - from) * 64`: per score it costs about what 64
   * bytes of keys cost the other kernels), so by default it splits from 65,536 scores; linkSegments counts 8
   * bytes per slot, splitting from 524,288 slots.
   */
  readonly threadMinBytes?: number;
}

/**
 * The `threads` a reference backend gets when its options name none: 2 where the machine has two cores or
 * more, else 1. Two because on this project's shared 2-core machine, over six bench runs of H2O, CaM and
 * KVMerger at 32 x 4k and 32 x 16k, two threads had the lower median in 29 of 36 rows (1.4-2.3x lower
 * when the second core was free, within noise when another process held it; bench/RESULTS.md, issue 12,
 * "Worker threads on the reference backend"); more threads than cores would only queue.
 */
export function defaultReferenceThreads(): number {
  return Math.min(2, availableParallelism());
}

/** Most threads the reference backend's `threads` option accepts. */
export const MAX_REFERENCE_THREADS = 64;

function checkOptions(o: ReferenceBackendOptions): void {
  const issues: ConfigIssue[] = [];
  for (const [k, min, max] of [['threads', 1, MAX_REFERENCE_THREADS], ['threadMinBytes', 0, 2 ** 40]] as const) {
    const v = o[k];
    if (v !== undefined && (!Number.isInteger(v) || v < min || v > max)) issues.push({ path: `/${k}`, rule: 'range', message: `must be an integer in [${min}, ${max}], got ${String(v)}`, allowed: [min, max] });
  }
  if (issues.length) throw new ConfigError(issues, 'reference backend options');
}

/** The names of the kernels the wasm mode implements. */
export const WASM_KERNELS = ['accumulate', 'adjacentCosine', 'gather', 'mergeSegments', 'mergeIntoNeighbours', 'topK', 'linkSegments', 'mergeSimilar'] as const;

/**
 * What a value is to the reference backend: a well-formed host tensor (float32 or int32 typed array that
 * fills its shape) that was not disposed, or why not.
 */
function inspector(disposed: WeakSet<object>): (value: unknown) => TensorMeta | string {
  return (value) => {
    if (typeof value === 'object' && value !== null && disposed.has(value)) return 'was disposed and can no longer be used';
    return inspect(value);
  };
}

function inspect(value: unknown): TensorMeta | string {
  const t = value as HostTensor;
  if (typeof value !== 'object' || value === null || !Array.isArray(t.shape) || t.data === undefined) {
    return 'is not a reference-backend tensor (expected { dtype, shape, data }); upload host data with kernels.fromHost()';
  }
  if (t.dtype !== 'float32' && t.dtype !== 'int32') return `has dtype ${String(t.dtype)}; the reference backend holds float32 and int32 tensors`;
  const okArray = t.dtype === 'float32' ? t.data instanceof Float32Array : t.data instanceof Int32Array;
  if (!okArray) return `has dtype ${t.dtype} but is backed by ${(t.data as object).constructor.name}`;
  let n = 1;
  for (const d of t.shape) {
    if (!Number.isInteger(d) || d < 0) return `has invalid dimension ${d} in shape ${fmtShape(t.shape)}`;
    n *= d;
  }
  if (t.data.length !== n) return `holds ${t.data.length} elements but its shape ${fmtShape(t.shape)} needs ${n}`;
  return t;
}

/**
 * The reference backend as core binds it: host tensors, and no kernel implementations of its own, so every
 * kernel runs core's reference implementation directly (plain TypeScript over `Float32Array` /
 * `Int32Array`, float64 accumulation), with its outputs' arrays from a {@link BufferPool}.
 *
 * Tensors are ordinary typed arrays owned by the garbage collector: forgetting to dispose leaks nothing.
 * Disposing hands a tensor's buffer back to the pool for the next output of its size, and the tensor
 * can no longer be used (kernels refuse it with a typed error naming the argument).
 */
export function referenceKernelBackend(options: ReferenceBackendOptions = {}): KernelBackend<HostTensor> {
  checkOptions(options);
  const poolBytes = options.poolBytes ?? DEFAULT_POOL_BYTES;
  const heap = options.kernels !== 'js' && poolBytes > 0 ? wasmHeap() : undefined;
  const wasm = heap ? new WasmPool(heap) : undefined;
  const pool = wasm ?? new BufferPool(poolBytes);
  const threads = heap ? new KernelThreads(heap, options.threads ?? defaultReferenceThreads(), options.threadMinBytes ?? THREAD_MIN_BYTES) : undefined;
  const why = options.kernels === 'js' ? '' : poolBytes === 0 ? '; wasm kernels off with poolBytes 0' : heap ? '' : `; wasm kernels unavailable: ${wasmUnavailable()}`;
  const disposed = new WeakSet<object>();
  const upload = (t: HostTensor): HostTensor => {
    const data = t.dtype === 'float32' ? pool.float32(t.data.length) : pool.int32(t.data.length);
    data.set(t.data);
    return { dtype: t.dtype, shape: [...t.shape], data } as HostTensor;
  };
  return defineKernelBackend<HostTensor>({
    name: 'reference',
    describe: () =>
      wasm
        ? `reference (WebAssembly SIMD for ${WASM_KERNELS.join(', ')} on tensors in a shared WebAssembly.Memory${threads && threads.count > 1 ? `, on ${threads.count} threads` : ''}; plain TypeScript for the rest)`
        : `reference (plain TypeScript, Float32Array${why})`,
    inspect: inspector(disposed),
    fromHost: upload,
    // A copy, so a caller editing the result can never change a tensor the backend (or a policy) still holds.
    toHost: async (tensor) => copyTensor(tensor),
    read: (tensor) => tensor,
    // Every tensor owns its array (uploads and outputs never alias), so a decode step may edit a cache in place.
    writable: true,
    dispose: (tensors) => {
      for (const t of tensors) {
        if (typeof t !== 'object' || t === null || disposed.has(t) || t.data === undefined) continue;
        disposed.add(t);
        pool.release(t.data);
      }
    },
    hostTensors: true,
    allocator: pool,
    ...(wasm && threads
      ? {
          kernels: {
            accumulate: wasmAccumulate(wasm),
            adjacentCosine: wasmAdjacentCosine(wasm, threads),
            gather: wasmGather(wasm, threads),
            mergeSegments: wasmMergeSegments(wasm, threads),
            mergeIntoNeighbours: wasmMergeIntoNeighbours(wasm, threads),
            topK: wasmTopK(wasm, threads),
            linkSegments: wasmLinkSegments(wasm, threads),
            mergeSimilar: wasmMergeSimilar(wasm, threads),
          },
        }
      : {}),
    extensions: { pool, wasm: wasm !== undefined, threads: threads?.count ?? 1, workerChunks: () => threads?.workerChunks ?? 0, close: () => threads?.close() },
  });
}

/**
 * Create the reference kernels: every kernel of {@link KVKernels} as core's reference implementation,
 * validated by core. Its tensor type is core's {@link HostTensor}, and its results are the ground truth
 * the other backends are tested against (1e-5 relative). `options.registry` adds a `KVFold` instance's
 * plugin kernels.
 */
export function createReferenceKernels(options: BindOptions & ReferenceBackendOptions = {}): ReferenceKernels {
  return bindKernels(referenceKernelBackend(options), options) as ReferenceKernels;
}

/** The reference backend's kernels: every kernel of {@link KVKernels}, plus the buffer pool its outputs come from. */
export interface ReferenceKernels extends KVKernels<HostTensor> {
  /** Where its tensors' arrays come from: the wasm heap, or buffers of disposed tensors kept for reuse (statistics: `pool.snapshot()`). */
  readonly pool: BufferPool | WasmPool;
  /** Whether the wasm kernels run (see {@link ReferenceBackendOptions.kernels}). */
  readonly wasm: boolean;
  /** Threads the wasm kernels run on (1 in `js` mode; see {@link ReferenceBackendOptions.threads}). */
  readonly threads: number;
  /** Chunks of heads the worker threads have run so far (0 on one thread): whether the split happens at all. */
  workerChunks(): number;
  /** Stop the worker threads, if any (idempotent); the kernels keep working on the calling thread. */
  close(): void;
}

/** The reference backend's registration; see {@link ReferenceBackendOptions}. */
export const referenceBackend: BackendDefinition<ReferenceBackendOptions> = defineBackend<ReferenceBackendOptions>({
  name: 'reference',
  description: 'Plain TypeScript kernels over Float32Array (float64 accumulation); the ground truth for every other backend.',
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      poolBytes: {
        type: 'integer',
        minimum: 0,
        maximum: 2 ** 40,
        default: DEFAULT_POOL_BYTES,
        description: 'Most bytes of disposed tensors kept for reuse by later outputs in js mode (0 turns reuse off, and with it the wasm kernels; the wasm heap always reuses freed memory); writing into reused memory avoids the page faults of fresh memory.',
      },
      kernels: {
        type: 'string',
        enum: ['wasm', 'js'],
        default: 'wasm',
        description: 'wasm: WebAssembly SIMD kernels for accumulate, adjacentCosine, gather, mergeSegments, mergeIntoNeighbours, topK, linkSegments and mergeSimilar on tensors in a shared WebAssembly.Memory (accumulate, adjacentCosine and gather bit-identical to the TypeScript, topK and linkSegments the same integers, the merges in float32 lanes within 1e-5 of it); js: every kernel in plain TypeScript (the ground truth: float64 sums, adjacentCosine in float32 lanes).',
      },
      threads: {
        type: 'integer',
        minimum: 1,
        maximum: MAX_REFERENCE_THREADS,
        description: 'Threads the wasm kernels run on, the caller included (default 2, or 1 on a one-core machine; 1 is the single-threaded mode): more than 1 splits large calls by heads between the caller and worker threads over the same shared memory (bit-identical results).',
      },
      threadMinBytes: {
        type: 'integer',
        minimum: 0,
        maximum: 2 ** 40,
        default: THREAD_MIN_BYTES,
        description: 'Smallest call, in bytes of keys (H x L x D x 4; topK counts 64 bytes per score of its window), that threads > 1 splits; smaller calls run on the calling thread.',
      },
    },
  },
  create: async (options) => referenceKernelBackend(options) as KernelBackend<unknown>,
});
