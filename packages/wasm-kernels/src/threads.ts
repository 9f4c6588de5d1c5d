import { Worker } from 'node:worker_threads';
import type { WasmKernelExports } from './index.js';

/**
 * What {@link KernelThreads} needs of a heap: the compiled kernels module and the shared memory its tensors
 * live in (workers instantiate the module over it), the kernels instantiated over that memory on this
 * thread, and scratch arrays in it for the control block. The reference backend's own heap and tfjs's
 * threaded wasm engine (whose heap is a `SharedArrayBuffer`) both provide it.
 */
export interface ThreadHeap {
  /** The compiled shared-memory kernels module ({@link kernelModule}`('shared')`). */
  readonly module: object;
  /** The shared `WebAssembly.Memory` every pointer refers to. */
  readonly sharedMemory: object;
  /** The kernels instantiated over {@link sharedMemory} on this thread. */
  readonly kernels: WasmKernelExports;
  /** An int32 array of `n` elements in the memory, or undefined when it is full. */
  scratch32(n: number): Int32Array | undefined;
  /** A float64 array of `n` elements in the memory, or undefined when it is full. */
  scratch64(n: number): Float64Array | undefined;
  /** Give back arrays from {@link scratch32} / {@link scratch64}. */
  release(...arrays: (Int32Array | Float64Array | undefined)[]): void;
}

/** The wasm kernels that can be split by heads, in the order the worker looks them up by number. */
export const SPLIT_KERNELS = ['adjacentCosine', 'gather', 'mergeSegments', 'mergeIntoNeighbours', 'topK', 'linkSegments', 'mergeSimilar'] as const satisfies readonly (keyof WasmKernelExports)[];

/** A wasm kernel that {@link KernelThreads.run} can split by heads. */
export type SplitKernel = (typeof SPLIT_KERNELS)[number];

/** Most arguments of a kernel call before its per-thread scratch, and most per-thread scratch pointers. */
const MAX_ARGS = 32;
const MAX_SCRATCH = 8;

// Words of the control block (int32, in the shared heap).
const SEQ = 0; // bumped for every job, and on close; workers sleep on it
const ENTRY = 1; // bit 0: the job's gate is open; bits 1..: workers inside the job (2 per worker)
const NEXT = 2; // the next chunk to claim
const FN = 3;
const NARGS = 4;
const HIDX = 5; // which argument is H
const CHUNK = 6; // heads per chunk
const NSCRATCH = 7;
const ERROR = 8; // set by a worker whose kernel threw
const QUIT = 9;
const WORKER_CHUNKS = 10; // chunks the workers ran, ever (the tests check that workers take part)
const SLOTS = 11; // threads this job has scratch for: workers of a higher slot sit it out
const CTL_WORDS = 16;

/**
 * The worker's program (a string: tests run the TypeScript sources, so there is no compiled file to point a
 * worker at). It instantiates the same compiled module over the same shared memory (its only import), sleeps
 * on the job counter, and claims chunks of heads until none are left. Chunks are claimed with
 * one atomic add, so a worker the scheduler runs late simply takes fewer of them: the caller never waits for
 * work that nobody started.
 */
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { module, memory, ctlAt, argAt, slot } = workerData;
const k = new WebAssembly.Instance(module, { env: { memory } }).exports;
const fns = ${JSON.stringify(SPLIT_KERNELS)}.map((n) => k[n]);
const ctl = new Int32Array(memory.buffer, ctlAt, ${CTL_WORDS});
const argv = new Float64Array(memory.buffer, argAt, ${2 * MAX_ARGS} + ${MAX_SCRATCH} * (slot + 1));
let seen = 0;
for (;;) {
  Atomics.wait(ctl, ${SEQ}, seen);
  seen = Atomics.load(ctl, ${SEQ});
  if (Atomics.load(ctl, ${QUIT}) !== 0) break;
  let v = Atomics.load(ctl, ${ENTRY});
  let inside = false;
  while ((v & 1) === 1) {
    const w = Atomics.compareExchange(ctl, ${ENTRY}, v, v + 2);
    if (w === v) { inside = true; break; }
    v = w;
  }
  if (!inside) continue;
  if (slot < ctl[${SLOTS}]) try {
    const fn = fns[ctl[${FN}]], n = ctl[${NARGS}], hIdx = ctl[${HIDX}], chunk = ctl[${CHUNK}], ns = ctl[${NSCRATCH}];
    const H = argv[hIdx];
    const args = new Array(n + ns);
    for (let j = 0; j < ns; j++) args[n + j] = argv[${2 * MAX_ARGS} + slot * ${MAX_SCRATCH} + j];
    for (;;) {
      const h0 = Atomics.add(ctl, ${NEXT}, 1) * chunk;
      if (h0 >= H) break;
      for (let i = 0; i < n; i++) args[i] = argv[i] + h0 * argv[${MAX_ARGS} + i];
      args[hIdx] = Math.min(chunk, H - h0);
      fn(...args);
      Atomics.add(ctl, ${WORKER_CHUNKS}, 1);
    }
  } catch {
    Atomics.store(ctl, ${ERROR}, 1);
  }
  if (Atomics.sub(ctl, ${ENTRY}, 2) === 2) Atomics.notify(ctl, ${ENTRY});
}
`;

/**
 * Smallest call (bytes of keys, `H * L * D * 4`) worth handing to the workers; below it one thread runs it.
 * Measured on the 2-core machine (bench/RESULTS.md, issue 12, "Worker threads on the reference backend"):
 * waking a worker costs 50-100 us there, and adjacentCosine and gather on cached data broke even between 2
 * and 6 MiB.
 */
export const THREAD_MIN_BYTES = 4 << 20;

/**
 * What one score of the window counts for in {@link KernelThreads.slots}'s threshold (calibrated in bytes of
 * keys that gather and adjacentCosine move): topK spends several such bytes per score (four passes, one
 * scalar histogram update). Measured on the 2-core machine with 32 heads, calls back to back: two threads
 * broke even at about 3072 scores per head (0.23 ms on one thread) and won 1.5x at 6144 and 1.7x at 12288,
 * so the default 4 MiB splits calls from 65536 scores up. Between other work (an H2O prefill) the worker
 * is often asleep when topK starts and the gain is smaller (about 1.1x at 32 x 12288).
 */
export const TOPK_BYTES_PER_SCORE = 64;

/**
 * What one slot counts for in {@link KernelThreads.slots}'s threshold (calibrated in bytes of keys that gather
 * and adjacentCosine move), so that the default 4 MiB splits calls from 524,288 slots up. With 32 heads, calls
 * back to back: two threads lost at 4,096 slots a head (0.56 against 0.31 ms), broke even at 8,192 (0.66 / 0.62)
 * and won at 16,384 (0.80 / 1.33).
 */
export const LINK_SEGMENTS_BYTES_PER_SLOT = 8;

/** How a split kernel's arguments advance per head: bytes per head of each argument (0 for scalars), and which argument is the head count. */
export interface HeadSplit {
  /** Bytes per head of each argument before the per-thread scratch, in the kernel's argument order. */
  readonly strides: readonly number[];
  /** Index of the argument that holds the number of heads. */
  readonly hIndex: number;
}

/** Bytes per head of each array of a layer of `M` slots (keys, values, positions, counts, scores). */
function layerStrides(M: number, D: number): number[] {
  return [M * D * 4, M * D * 4, M * 4, M * 4, M * 4];
}

/**
 * Each split kernel's {@link HeadSplit}, for its arguments in `assembly/kernels.ts`' order (a layer is its
 * five arrays keys, values, positions, counts, scores): one table that every backend splitting calls by
 * heads uses, so an argument list and its strides are written down once.
 */
export const HEAD_SPLITS = {
  /** keys, out, H, L, D. */
  adjacentCosine: (L: number, D: number): HeadSplit => ({ strides: [L * D * 4, Math.max(0, L - 1) * 4, 0, 0, 0], hIndex: 2 }),
  /** layer (5), index, H, L, D, k, output layer (5). */
  gather: (L: number, D: number, k: number): HeadSplit => ({ strides: [...layerStrides(L, D), k * 4, 0, 0, 0, 0, ...layerStrides(k, D)], hIndex: 6 }),
  /** layer (5), segment, pivot, sigma, H, L, D, M, byCount, output layer (5), run starts, run ends. */
  mergeSegments: (L: number, D: number, M: number): HeadSplit => ({
    strides: [...layerStrides(L, D), L * 4, M * 4, M * 4, 0, 0, 0, 0, 0, ...layerStrides(M, D), M * 4, M * 4],
    hIndex: 8,
  }),
  /** layer (5), keep, source, targetStart, targetCount, gate, H, L, D, K, S, output layer (5). */
  mergeIntoNeighbours: (L: number, D: number, K: number, S: number): HeadSplit => ({
    strides: [...layerStrides(L, D), K * 4, S * 4, S * 4, S * 4, S * 4, 0, 0, 0, 0, 0, ...layerStrides(K, D)],
    hIndex: 10,
  }),
  /** layer (5), protect, H, L, D, P, count, minSimilarity, sigma, byCount, output layer (5), lowest, eligible. */
  mergeSimilar: (L: number, D: number, M: number, P: number): HeadSplit => ({
    strides: [...layerStrides(L, D), P * 4, 0, 0, 0, 0, 0, 0, 0, 0, ...layerStrides(M, D), 4, 4],
    hIndex: 6,
  }),
  /** scores, out, H, L, from, to, k. */
  topK: (L: number, k: number): HeadSplit => ({ strides: [L * 4, k * 4, 0, 0, 0, 0, 0], hIndex: 2 }),
  /** links, scores, segment, pivot, H, L, C. */
  linkSegments: (L: number, C: number): HeadSplit => ({ strides: [C * 4, L * 4, L * 4, (L - C) * 4, 0, 0, 0], hIndex: 4 }),
} as const satisfies Record<SplitKernel, (...dims: number[]) => HeadSplit>;

/**
 * The workers of one thread count over one heap: shared by every backend handle with that heap and count, started with the first call a handle splits, stopped when the last
 * handle closes or is garbage collected. Calls never interleave (the API is synchronous on the thread
 * that owns the heap), so one control block serves them all.
 */
class WorkerPool {
  private workers: Worker[] = [];
  private ctl: Int32Array | undefined;
  private argv: Float64Array | undefined;
  /** Handles using this pool. */
  refs = 0;
  /** Set when the pool is stopped, failed, or could not get its control block. */
  off = false;

  constructor(
    readonly heap: ThreadHeap,
    readonly count: number,
  ) {}

  /** Whether calls may be split: workers started (now, on the first call) and not stopped. */
  ready(): boolean {
    if (this.off) return false;
    if (this.ctl) return true;
    const { heap, count } = this;
    const ctl = heap.scratch32(CTL_WORDS);
    const argv = heap.scratch64(2 * MAX_ARGS + MAX_SCRATCH * count);
    if (!ctl || !argv) {
      heap.release(ctl, argv);
      this.off = true;
      return false;
    }
    ctl.fill(0);
    for (let slot = 1; slot < count; slot++) {
      const w = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { module: heap.module, memory: heap.sharedMemory, ctlAt: ctl.byteOffset, argAt: argv.byteOffset, slot },
      });
      // A worker that fails to start never claims a chunk, so the caller simply runs everything.
      w.on('error', () => undefined);
      w.unref();
      this.workers.push(w);
    }
    this.ctl = ctl;
    this.argv = argv;
    return true;
  }

  /** See {@link KernelThreads.run}; returns the chunks the workers ran. `scratch.length` is at least 2. */
  run(fn: (...a: number[]) => void, id: number, args: readonly number[], strides: readonly number[], hIndex: number, scratch: readonly (readonly number[])[]): number {
    const ctl = this.ctl!;
    const argv = this.argv!;
    const H = args[hIndex]!;
    const n = args.length;
    const ns = scratch[0]!.length;
    if (n > MAX_ARGS || ns > MAX_SCRATCH) throw new RangeError(`kernel ${id}: ${n} arguments and ${ns} scratch pointers exceed the thread block (${MAX_ARGS}, ${MAX_SCRATCH})`);
    for (let i = 0; i < n; i++) {
      argv[i] = args[i]!;
      argv[MAX_ARGS + i] = strides[i] ?? 0;
    }
    for (let t = 0; t < scratch.length; t++) for (let j = 0; j < ns; j++) argv[2 * MAX_ARGS + t * MAX_SCRATCH + j] = scratch[t]![j]!;
    // About eight chunks per thread: enough to even out a worker that starts late, few enough to cost nothing.
    const chunk = Math.max(1, Math.ceil(H / (scratch.length * 8)));
    ctl[FN] = id;
    ctl[NARGS] = n;
    ctl[HIDX] = hIndex;
    ctl[CHUNK] = chunk;
    ctl[NSCRATCH] = ns;
    ctl[SLOTS] = scratch.length;
    const before = Atomics.load(ctl, WORKER_CHUNKS);
    Atomics.store(ctl, NEXT, 0);
    Atomics.store(ctl, ENTRY, 1);
    Atomics.add(ctl, SEQ, 1);
    Atomics.notify(ctl, SEQ);
    const mine = args.slice();
    const own = scratch[0]!;
    try {
      for (;;) {
        const h0 = Atomics.add(ctl, NEXT, 1) * chunk;
        if (h0 >= H) break;
        for (let i = 0; i < n; i++) mine[i] = args[i]! + h0 * (strides[i] ?? 0);
        mine[hIndex] = Math.min(chunk, H - h0);
        fn(...mine, ...own);
      }
    } finally {
      // Close the gate, then wait for the workers inside to finish the chunks they claimed.
      Atomics.and(ctl, ENTRY, ~1);
      for (let v = Atomics.load(ctl, ENTRY); v !== 0; v = Atomics.load(ctl, ENTRY)) Atomics.wait(ctl, ENTRY, v);
    }
    if (Atomics.load(ctl, ERROR) !== 0) {
      // A worker's kernel threw (it should not: the inputs were validated). Every kernel rewrites its whole
      // output, so one call here on all heads gives the right result; the workers are not used again.
      this.stop();
      fn(...args, ...own);
      return 0;
    }
    return Atomics.load(ctl, WORKER_CHUNKS) - before;
  }

  /** Stop the workers (idempotent); the control block goes back to the heap once no worker can read it. */
  stop(): void {
    this.off = true;
    const { ctl, argv, workers, heap } = this;
    if (!ctl || Atomics.exchange(ctl, QUIT, 1) === 1) return;
    Atomics.add(ctl, SEQ, 1);
    Atomics.notify(ctl, SEQ);
    let left = workers.length;
    const exited = (): void => {
      if (--left === 0) heap.release(ctl, argv);
    };
    for (const w of workers) {
      w.once('exit', exited);
      void w.terminate();
    }
  }
}

/** Pools by heap memory, then by thread count. */
const pools = new WeakMap<object, Map<number, WorkerPool>>();

/** The pools over `heap`'s memory. */
function poolsOf(heap: ThreadHeap): Map<number, WorkerPool> {
  let m = pools.get(heap.sharedMemory);
  if (!m) {
    m = new Map();
    pools.set(heap.sharedMemory, m);
  }
  return m;
}

/** One handle fewer on `pool`; the last one stops it. */
function release(pool: WorkerPool): void {
  if (--pool.refs > 0) return;
  pool.stop();
  const m = poolsOf(pool.heap);
  if (m.get(pool.count) === pool) m.delete(pool.count);
}

const finalizer = new FinalizationRegistry<WorkerPool>(release);

/**
 * Worker threads that run the wasm kernels together with the calling thread, split by
 * heads: the tensors are head-major (`[H, L, D]`, `[H, L]`), so a range of heads is the same kernel on offset
 * pointers and a smaller `H`, and every head is computed by the same code as on one thread, so results are
 * bit-identical. The API stays synchronous: the caller posts a job in a control block in the shared heap,
 * claims chunks of heads itself, and waits (`Atomics.wait`) only for chunks a worker has already taken.
 * The workers are shared by every backend handle over the same heap with the same thread count, start with the first
 * call that is split, are unref'd (they never keep the process alive), and stop when the last backend using
 * them calls {@link close} or is garbage collected.
 */
export class KernelThreads {
  /** Threads a large call runs on, the caller's included (1: no workers). */
  readonly count: number;
  private pool: WorkerPool | undefined;
  private chunks = 0;

  /** `count` threads over `heap` (`count - 1` shared workers; 1 uses none) for calls of at least `minBytes` bytes of keys. */
  constructor(
    private readonly heap: ThreadHeap,
    count: number,
    private readonly minBytes = THREAD_MIN_BYTES,
  ) {
    this.count = count;
    if (count <= 1) return;
    const m = poolsOf(heap);
    let pool = m.get(count);
    if (!pool || pool.off) {
      pool = new WorkerPool(heap, count);
      m.set(count, pool);
    }
    pool.refs++;
    this.pool = pool;
    finalizer.register(this, pool, this);
  }

  /**
   * How many per-thread scratch sets a call of `H` heads over `bytes` bytes of keys needs: the threads it
   * will run on (1 when it is too small to pay for the handoff, or when the workers are stopped).
   */
  slots(H: number, bytes: number): number {
    if (!this.pool || H < 2 || bytes < this.minBytes || !this.pool.ready()) return 1;
    return Math.min(this.count, H);
  }

  /**
   * Run `kernel` on `args` (its arguments up to its scratch, with `args[hIndex]` the number of heads), each
   * pointer argument advancing by `strides[i]` bytes per head (0 for scalars; {@link HEAD_SPLITS} has each
   * kernel's), with `scratch[t]` appended as the scratch of thread `t`. `scratch.length` is what {@link slots} returned; 1 runs it here, as one call.
   */
  run(kernel: SplitKernel, args: readonly number[], { strides, hIndex }: HeadSplit, scratch: readonly (readonly number[])[]): void {
    const fn = this.heap.kernels[kernel] as (...a: number[]) => void;
    if (scratch.length <= 1 || !this.pool || this.pool.off) {
      fn(...args, ...(scratch[0] ?? []));
      return;
    }
    this.chunks += this.pool.run(fn, SPLIT_KERNELS.indexOf(kernel), args, strides, hIndex, scratch);
  }

  /** Chunks of heads the workers have run for this handle's calls (0 without workers). */
  get workerChunks(): number {
    return this.chunks;
  }

  /** Stop using the workers (idempotent; the last handle stops them); later calls run on the calling thread. */
  close(): void {
    const pool = this.pool;
    if (!pool) return;
    this.pool = undefined;
    finalizer.unregister(this);
    release(pool);
  }
}
