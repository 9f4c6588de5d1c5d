import * as tf from '@tensorflow/tfjs-core';
import type { HostTensor } from '@kvfold/core';
import { instantiateKernels, kernelModule, KernelThreads, THREAD_MIN_BYTES, type HeadSplit, type KernelMemory, type SplitKernel, type ThreadHeap, type WasmKernelExports } from '@kvfold/wasm-kernels';

/**
 * kvfold's wasm kernels inside the tfjs-backend-wasm engine, the way TensorFlow.js composes a backend: one
 * custom tfjs kernel per hot kvfold kernel, registered by name for the `wasm` backend (`registerKernel`)
 * and run through `tf.engine().runKernel`, so tfjs tracks their outputs like any op's (`tf.tidy`,
 * `tf.memory`, `tf.profile`). The kernels run in place on the engine's own heap: the @kvfold/wasm-kernels
 * module is instantiated over the Emscripten module's `WebAssembly.Memory`, inputs are read at their
 * tensors' heap offsets, outputs are tensors the engine allocates (`makeOutput`) and scratch comes from
 * its `malloc`. Nothing is copied in or out. The module has no data segments, globals or allocator of its
 * own, so it writes nothing but the outputs and scratch it is handed.
 * @module
 */

/** What a tensor is to the wasm engine: its heap offset (tfjs-backend-wasm 4.x's `TensorData`). */
interface EngineTensorData {
  readonly memoryOffset: number;
}

/** The parts of tfjs-backend-wasm's `BackendWasm` used here (checked at run time: they are not public API). */
export interface WasmEngine {
  /** The Emscripten module: its memory, allocator and heap view. */
  readonly wasm: {
    readonly asm?: { readonly memory?: KernelMemory };
    readonly wasmMemory?: KernelMemory;
    readonly HEAPU8: Uint8Array;
    _malloc(bytes: number): number;
    _free(pointer: number): void;
  };
  /** Tensor data by data id. */
  readonly dataIdMap: { has(dataId: object): boolean; get(dataId: object): EngineTensorData | undefined };
  /** How many tensors share a data id's memory (a reshape shares its input's; wasm clones copy). */
  refCount(dataId: object): number;
  /** A new tensor in the engine's heap (contents unspecified). */
  makeOutput(shape: number[], dtype: 'float32' | 'int32'): tf.TensorInfo;
}

/** kvfold's kernels instantiated over one wasm engine's heap. */
export interface EngineKernels {
  /** The engine (tfjs's `BackendWasm`). */
  readonly engine: WasmEngine;
  /** The @kvfold/wasm-kernels exports, over the engine's memory. */
  readonly kernels: WasmKernelExports;
  /**
   * Worker threads for calls split as `split` (one set per thread count and threshold, made on first use);
   * undefined for one thread, or when the heap is not shared memory (tfjs's own single-threaded
   * engine: only the threaded build that {@link useThreadedWasmEngine} starts has a shared heap).
   */
  threadsFor(split: Split): KernelThreads | undefined;
}

/** How a kvfold tfjs backend splits its kernels: threads (the caller's included) and the smallest call split. */
export interface Split {
  /** Threads, the caller's included (1: no split). */
  readonly threads: number;
  /** Smallest call handed to the workers, in bytes of keys ({@link KernelThreads}' `minBytes`). */
  readonly minBytes: number;
}

const byEngine = new WeakMap<object, EngineKernels>();

/** The engine's memory, when `backend` looks like tfjs-backend-wasm's `BackendWasm` of tfjs 4.x. */
function memoryOf(backend: unknown): KernelMemory | undefined {
  const b = backend as Partial<WasmEngine> | undefined;
  const w = b?.wasm;
  if (!w || typeof w._malloc !== 'function' || typeof w._free !== 'function' || typeof b.makeOutput !== 'function' || typeof b.refCount !== 'function' || typeof b.dataIdMap?.get !== 'function') return undefined;
  // The single-threaded builds export their memory (`asm.memory`); the threaded one creates it (`wasmMemory`).
  const memory = w.asm?.memory ?? w.wasmMemory;
  return memory !== undefined && typeof memory === 'object' && 'buffer' in memory ? memory : undefined;
}

/**
 * kvfold's kernels over `backend`'s heap (instantiated on first use, once per engine instance).
 * @throws Error naming why when `backend` is not a tfjs-backend-wasm engine kvfold can run in, or the
 *   kernels module cannot be instantiated there (no wasm SIMD).
 */
export function engineKernels(backend: object): EngineKernels {
  let k = byEngine.get(backend);
  if (!k) {
    const memory = memoryOf(backend);
    if (!memory) throw new Error("this tfjs 'wasm' backend does not expose its WebAssembly.Memory, malloc and tensor offsets as tfjs-backend-wasm 4.x does");
    const kind = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer ? 'shared' : 'unshared';
    const engine = backend as WasmEngine;
    const kernels = instantiateKernels(memory, kind);
    const sets = new Map<string, KernelThreads>();
    const heap = kind === 'shared' ? threadHeap(engine, memory, kernels) : undefined;
    const threadsFor = ({ threads, minBytes }: Split): KernelThreads | undefined => {
      if (!heap || !(threads > 1)) return undefined;
      const key = `${threads}:${minBytes}`;
      let t = sets.get(key);
      if (!t) {
        t = new KernelThreads(heap, threads, minBytes);
        sets.set(key, t);
      }
      return t;
    };
    k = { engine, kernels, threadsFor };
    byEngine.set(backend, k);
  }
  return k;
}

/** The engine's shared heap as {@link KernelThreads} uses it (the control block comes from the engine's `malloc`). */
function threadHeap(engine: WasmEngine, memory: KernelMemory, kernels: WasmKernelExports): ThreadHeap {
  const alloc = <A extends Int32Array | Float64Array>(make: new (b: ArrayBufferLike, at: number, n: number) => A, bytes: number, n: number): A | undefined => {
    const p = engine.wasm._malloc(Math.max(8, n * bytes)) >>> 0;
    return p === 0 ? undefined : new make(memory.buffer, p, n);
  };
  return {
    module: kernelModule('shared'),
    sharedMemory: memory,
    kernels,
    scratch32: (n) => alloc(Int32Array, 4, n),
    scratch64: (n) => alloc(Float64Array, 8, n),
    release: (...arrays) => {
      for (const a of arrays) if (a) engine.wasm._free(a.byteOffset);
    },
  };
}

/**
 * Run wasm kernel `name` on `args`, split by heads (`layout`, the kernel's entry in `HEAD_SPLITS`) over
 * `split.threads` threads when the engine's heap is shared and the call is large enough (`bytes`, as
 * {@link KernelThreads.slots} counts them); each thread gets its own scratch blocks of the
 * `perThread` byte sizes, appended to its arguments. Every head is computed by the same code as on one
 * thread, so the result is bit-identical.
 */
export function runSplit(ek: EngineKernels, split: Split, name: SplitKernel, args: number[], layout: HeadSplit, bytes: number, perThread: readonly number[]): void {
  const pool = ek.threadsFor(split);
  const slots = pool ? pool.slots(args[layout.hIndex]!, bytes) : 1;
  withScratch(ek.engine, Array.from({ length: slots }, () => perThread).flat(), (pointers) => {
    const scratch = Array.from({ length: slots }, (_, t) => pointers.slice(t * perThread.length, (t + 1) * perThread.length));
    if (pool) pool.run(name, args, layout, scratch);
    else (ek.kernels[name] as (...a: number[]) => void)(...args, ...scratch[0]!);
  });
}

/** Heap byte offset of a tensor of `engine` (tfjs moves tensors of other engines in before a kernel runs). */
export function offsetOf(engine: WasmEngine, t: tf.TensorInfo): number {
  const data = engine.dataIdMap.get(t.dataId);
  if (!data) throw new Error('tfjs wasm kernel: an input tensor is not in the wasm engine');
  return data.memoryOffset;
}

/**
 * A host view of a wasm-engine tensor's data in the heap (no copy; valid until the next allocation may
 * grow the heap), or undefined when the tensor lives in another engine.
 */
export function heapView(engine: WasmEngine, t: tf.Tensor): HostTensor | undefined {
  if (!engine.dataIdMap.has(t.dataId)) return undefined;
  const at = engine.dataIdMap.get(t.dataId)!.memoryOffset;
  const buffer = engine.wasm.HEAPU8.buffer;
  return t.dtype === 'int32'
    ? { dtype: 'int32', shape: t.shape, data: new Int32Array(buffer, at, t.size) }
    : { dtype: 'float32', shape: t.shape, data: new Float32Array(buffer, at, t.size) };
}

/**
 * {@link heapView} for the in-place decode path (`KernelBackend.view`): with `write`, undefined when
 * another tensor shares the memory (a reshape shares its input's), so an edit reaches no
 * tensor but the one handed over.
 */
export function editableView(engine: WasmEngine, t: tf.Tensor, write: boolean): HostTensor | undefined {
  if (write && (!engine.dataIdMap.has(t.dataId) || engine.refCount(t.dataId) !== 1)) return undefined;
  return heapView(engine, t);
}

/** Heap offsets of `tensors`, or undefined when any of them lives in another engine. */
export function offsetsIn(engine: WasmEngine, tensors: readonly tf.Tensor[]): number[] | undefined {
  const out: number[] = [];
  for (const t of tensors) {
    const data = engine.dataIdMap.get(t.dataId);
    if (!data) return undefined;
    out.push(data.memoryOffset);
  }
  return out;
}

/**
 * Scratch blocks of the given byte sizes from the engine's `malloc` for the duration of `f`, freed after.
 * @throws Error when the heap cannot grow to hold them.
 */
export function withScratch<R>(engine: WasmEngine, bytes: readonly number[], f: (pointers: number[]) => R): R {
  const pointers: number[] = [];
  try {
    for (const n of bytes) {
      // `>>> 0`: malloc returns a signed offset above 2 GiB. A 0 is a failed allocation.
      const p = engine.wasm._malloc(Math.max(8, n)) >>> 0;
      if (p === 0) throw new Error(`tfjs wasm kernel: the wasm heap cannot grow by ${n} bytes of scratch`);
      pointers.push(p);
    }
    return f(pointers);
  } finally {
    for (const p of pointers) engine.wasm._free(p);
  }
}

/** Register `kernelFunc` as tfjs kernel `name` of the `wasm` backend, once per process. */
export function registerWasmKernel(name: string, kernelFunc: (engine: EngineKernels, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap) => tf.TensorInfo | tf.TensorInfo[]): void {
  // registerKernel warns when a name is registered twice (this module can be loaded twice, from src and dist).
  if (tf.getKernel(name, 'wasm') !== undefined) return;
  tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: ({ inputs, backend, attrs }) => kernelFunc(engineKernels(backend), inputs, attrs ?? {}) });
}

/** The five layer fields of a tfjs kernel's outputs, made in the engine's heap: keys, values `[H, M, D]`; positions, counts, scores `[H, M]`. */
export function layerOutputs(engine: WasmEngine, H: number, M: number, D: number): tf.TensorInfo[] {
  return [engine.makeOutput([H, M, D], 'float32'), engine.makeOutput([H, M, D], 'float32'), engine.makeOutput([H, M], 'int32'), engine.makeOutput([H, M], 'int32'), engine.makeOutput([H, M], 'float32')];
}

/** The layer over five output tensors in {@link layerOutputs}'s order. */
export function layerOf(out: tf.Tensor[]): { keys: tf.Tensor; values: tf.Tensor; positions: tf.Tensor; counts: tf.Tensor; scores: tf.Tensor } {
  const [keys, values, positions, counts, scores] = out as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
  return { keys, values, positions, counts, scores };
}

/** The split a kvfold tfjs backend passes to its kernels (attrs `threads`, `minBytes`; one thread when absent). */
export function threadsOf(attrs: tf.NamedAttrMap): Split {
  return {
    threads: typeof attrs.threads === 'number' ? attrs.threads : 1,
    minBytes: typeof attrs.minBytes === 'number' ? attrs.minBytes : THREAD_MIN_BYTES,
  };
}
