import type { HostAllocator, PoolStats } from '@kvfold/core';
import { kernelModule, type WasmKernelExports } from '@kvfold/wasm-kernels';

/** The part of the WebAssembly JS API used here (this project's TypeScript libs declare none of it). */
interface WasmMemory {
  readonly buffer: ArrayBufferLike;
  grow(pages: number): number;
}
interface WasmApi {
  Memory: new (descriptor: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
  Instance: new (module: object, imports: object) => { readonly exports: Record<string, unknown> };
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

const PAGE = 65_536;
/** Wasm32's limit: 4 GiB. */
const MAX_PAGES = 65_536;
/** Blocks start on a cache line. */
const ALIGN = 64;
/** Page 0 stays unused, so no tensor sits at address 0. */
const HEAP_START = PAGE;

interface Block {
  readonly offset: number;
  readonly bytes: number;
  readonly pool: WasmPool;
}

/**
 * One shared `WebAssembly.Memory` per process that the reference backend's tensors live in, so its wasm
 * kernels read and write them in place (no copy in or out per call), with a first-fit allocator over it.
 *
 * The memory is shared (`SharedArrayBuffer`) because growing a shared memory never detaches the arrays
 * already handed out, where growing an ordinary one would. Freed blocks are coalesced with their free
 * neighbours and reused for any size; wasm memory never shrinks, so the heap's size is its peak. A
 * tensor that is dropped without `dispose` goes back when the garbage collector finalizes its array.
 * When the heap cannot grow (4 GiB, or the system refuses), allocations fall back to ordinary arrays and
 * the kernels that get them run the TypeScript reference.
 */
export class WasmHeap {
  /** The memory every heap array is a view of. */
  private readonly memory: WasmMemory;
  /** The compiled kernels, kept so worker threads can instantiate them over the same memory. */
  readonly module: object;
  /** The kernels, instantiated over the heap's memory. */
  readonly kernels: WasmKernelExports;
  private readonly buffers = new WeakSet<object>();
  private buffer: SharedArrayBuffer;
  private readonly freeOffset: number[] = [];
  private readonly freeBytes: number[] = [];
  private top = HEAP_START;
  private readonly blocks = new WeakMap<object, Block>();
  private readonly finalizer = new FinalizationRegistry<Block>((block) => {
    block.pool.forget(block.bytes);
    this.free(block.offset, block.bytes);
  });

  /** A heap over a new shared memory, with `module` (@kvfold/wasm-kernels' shared-memory module) instantiated over it. */
  constructor(module: object) {
    this.module = module;
    this.memory = new WA.Memory({ initial: 16, maximum: MAX_PAGES, shared: true });
    const instance = new WA.Instance(module, { env: { memory: this.memory } });
    this.kernels = instance.exports as unknown as WasmKernelExports;
    this.buffer = this.memory.buffer as unknown as SharedArrayBuffer;
    this.buffers.add(this.buffer);
  }

  /** The heap's `WebAssembly.Memory`, to post to worker threads that instantiate {@link module} over it. */
  get sharedMemory(): object {
    return this.memory;
  }

  /** Byte offset of a heap array (any view this heap handed out), or -1 when `a` lives elsewhere. */
  pointer(a: Float32Array | Int32Array | Float64Array): number {
    return this.buffers.has(a.buffer) ? a.byteOffset : -1;
  }

  /** Bytes the heap's memory spans now (its peak use, since it never shrinks). */
  get bytes(): number {
    return this.memory.buffer.byteLength;
  }

  /** A block of `bytes` (rounded up to 64), or -1 when the memory cannot grow that far. */
  alloc(bytes: number): number {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    for (let i = 0; i < this.freeOffset.length; i++) {
      if (this.freeBytes[i]! < size) continue;
      const at = this.freeOffset[i]!;
      if (this.freeBytes[i] === size) {
        this.freeOffset.splice(i, 1);
        this.freeBytes.splice(i, 1);
      } else {
        this.freeOffset[i] = at + size;
        this.freeBytes[i] = this.freeBytes[i]! - size;
      }
      return at;
    }
    const at = this.top;
    const need = at + size;
    if (need > this.buffer.byteLength) {
      const pages = Math.ceil((need - this.buffer.byteLength) / PAGE);
      if (this.buffer.byteLength / PAGE + pages > MAX_PAGES) return -1;
      try {
        // Grow by at least a quarter, so a run of growing tensors does not grow the memory once per tensor.
        this.memory.grow(Math.min(MAX_PAGES - this.buffer.byteLength / PAGE, Math.max(pages, Math.ceil(this.buffer.byteLength / PAGE / 4))));
      } catch {
        try {
          this.memory.grow(pages);
        } catch {
          return -1;
        }
      }
      this.buffer = this.memory.buffer as unknown as SharedArrayBuffer;
      this.buffers.add(this.buffer);
    }
    this.top = need;
    return at;
  }

  /** Give back a block from {@link alloc} (same `bytes`). */
  free(offset: number, bytes: number): void {
    let size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    let at = offset;
    // Insert in offset order, merging with the free neighbours on either side.
    let lo = 0;
    let hi = this.freeOffset.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.freeOffset[mid]! < at) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0 && this.freeOffset[lo - 1]! + this.freeBytes[lo - 1]! === at) {
      lo--;
      at = this.freeOffset[lo]!;
      size += this.freeBytes[lo]!;
      this.freeOffset.splice(lo, 1);
      this.freeBytes.splice(lo, 1);
    }
    if (lo < this.freeOffset.length && at + size === this.freeOffset[lo]) {
      size += this.freeBytes[lo]!;
      this.freeOffset.splice(lo, 1);
      this.freeBytes.splice(lo, 1);
    }
    if (at + size === this.top) {
      this.top = at;
      return;
    }
    this.freeOffset.splice(lo, 0, at);
    this.freeBytes.splice(lo, 0, size);
  }

  /** Bytes in free blocks below the top. */
  get freeBlockBytes(): number {
    let n = 0;
    for (const b of this.freeBytes) n += b;
    return n;
  }

  /** A float64 scratch array of `n` elements in the heap (give it back with {@link release}), or undefined when full. */
  scratch64(n: number): Float64Array | undefined {
    const at = this.alloc(n * 8);
    return at < 0 ? undefined : new Float64Array(this.buffer, at, n);
  }

  /** An int32 scratch array of `n` elements in the heap, or undefined when full. */
  scratch32(n: number): Int32Array | undefined {
    const at = this.alloc(n * 4);
    return at < 0 ? undefined : new Int32Array(this.buffer, at, n);
  }

  /** Give back scratch arrays from {@link scratch64} / {@link scratch32}. */
  release(...arrays: (Float64Array | Int32Array | undefined)[]): void {
    for (const a of arrays) if (a) this.free(a.byteOffset, a.byteLength);
  }

  /** A tensor array of `n` elements owned by `pool`, or undefined when the heap is full. */
  tensor<A extends Float32Array | Int32Array>(make: (buffer: SharedArrayBuffer, offset: number, n: number) => A, n: number, pool: WasmPool): A | undefined {
    const at = this.alloc(n * 4);
    if (at < 0) return undefined;
    const a = make(this.buffer, at, n);
    const block = { offset: at, bytes: n * 4, pool };
    this.blocks.set(a, block);
    this.finalizer.register(a, block, a);
    return a;
  }

  /** Give back a tensor array from {@link tensor}; returns its bytes, or 0 when `a` is not a live one of `pool`. */
  releaseTensor(a: Float32Array | Int32Array, pool: WasmPool): number {
    const block = this.blocks.get(a);
    if (!block || block.pool !== pool) return 0;
    this.blocks.delete(a);
    this.finalizer.unregister(a);
    this.free(block.offset, block.bytes);
    return block.bytes;
  }
}

let shared: WasmHeap | null | undefined;

/**
 * The process's heap, created on first use, or undefined where the kernels cannot run (the `.wasm` file
 * is missing, or this engine lacks wasm SIMD or shared memory); the reason is in {@link wasmUnavailable}.
 */
export function wasmHeap(): WasmHeap | undefined {
  if (shared === undefined) {
    try {
      shared = new WasmHeap(kernelModule('shared'));
    } catch (e) {
      shared = null;
      unavailable = (e as Error).message;
    }
  }
  return shared ?? undefined;
}

let unavailable = '';

/** Why {@link wasmHeap} returned undefined ('' when it did not). */
export function wasmUnavailable(): string {
  return unavailable;
}

/**
 * The reference backend's allocator in wasm mode: tensors in the process's {@link WasmHeap}, with the
 * same statistics as core's `BufferPool` for this backend's tensors (peak live bytes per call is what
 * the speed suite reports). Freed memory is coalesced and reused by every backend in the process.
 */
export class WasmPool implements HostAllocator {
  private stats = { allocatedBytes: 0, reusedBytes: 0, pooledBytes: 0, liveBytes: 0, peakLiveBytes: 0 };

  /** The process's heap this pool's tensors live in. */
  readonly heap: WasmHeap;

  /** A pool over `heap`. */
  constructor(heap: WasmHeap) {
    this.heap = heap;
  }

  /** A float32 array of `n` elements in the heap (an ordinary array when the heap is full); contents unspecified. */
  float32(n: number): Float32Array {
    const a = this.heap.tensor((b, at, k) => new Float32Array(b, at, k), n, this);
    if (!a) return new Float32Array(n);
    this.count(n * 4);
    return a;
  }

  /** An int32 array of `n` elements in the heap (an ordinary array when the heap is full); contents unspecified. */
  int32(n: number): Int32Array {
    const a = this.heap.tensor((b, at, k) => new Int32Array(b, at, k), n, this);
    if (!a) return new Int32Array(n);
    this.count(n * 4);
    return a;
  }

  /** Give back the heap block behind `data` if this pool handed it out and it is not back yet; ignored otherwise. */
  release(data: Float32Array | Int32Array): void {
    this.forget(this.heap.releaseTensor(data, this));
  }

  /** Counters since creation: `allocatedBytes` is what this pool took from the heap, `pooledBytes` the heap's free bytes. */
  snapshot(): PoolStats {
    return { ...this.stats, pooledBytes: this.heap.freeBlockBytes };
  }

  /** Start a new peak measurement at the current live bytes. */
  resetPeak(): void {
    this.stats.peakLiveBytes = this.stats.liveBytes;
  }

  /** Nothing to drop: freed blocks belong to the shared heap (kept for `BufferPool`'s interface). */
  clear(): void {}

  /** @internal A block of `bytes` went back to the heap. */
  forget(bytes: number): void {
    this.stats.liveBytes -= bytes;
  }

  private count(bytes: number): void {
    this.stats.allocatedBytes += bytes;
    this.stats.liveBytes += bytes;
    if (this.stats.liveBytes > this.stats.peakLiveBytes) this.stats.peakLiveBytes = this.stats.liveBytes;
  }
}
