import type { HostAllocator } from './kernels/host.js';

/** Default `poolBytes` of the backends that pool their buffers: 1 GiB. */
export const DEFAULT_POOL_BYTES = 2 ** 30;

/** Buffers smaller than this are left to the garbage collector: reusing them saves nothing measurable. */
const MIN_POOLED_BYTES = 64 * 1024;

/** What a {@link BufferPool} has done since it was created. */
export interface PoolStats {
  /** Bytes of buffers allocated fresh (pooled sizes only). */
  readonly allocatedBytes: number;
  /** Bytes of requests served from released buffers. */
  readonly reusedBytes: number;
  /** Bytes held for reuse now. */
  readonly pooledBytes: number;
  /** Bytes handed out by the pool and not released yet. */
  readonly liveBytes: number;
  /** Highest {@link liveBytes} since the last {@link BufferPool.resetPeak}. */
  readonly peakLiveBytes: number;
}

/**
 * An allocator for backends whose tensors live in JavaScript memory (the reference backend, the onnx
 * backend's CPU tensors): buffers of disposed tensors are kept (up to `maxBytes`, oldest dropped first)
 * and handed out again for requests of the same byte length.
 *
 * Why: a kernel's output written into fresh memory pays the operating system's page faults on first
 * touch (on this project's machines, a fresh 32 MB buffer filled at about 4 GB/s against 16-39 GB/s
 * into memory touched before), which for a row gather costs more than the copy itself. Compression
 * disposes the layer it replaced, so steady-state compression and decoding reuse those buffers.
 *
 * Only buffers this pool handed out come back, each once; a backend releases a buffer only when the
 * tensor holding it is disposed, and refuses disposed tensors, so a stale handle fails with a typed
 * error instead of reading another tensor's data.
 */
export class BufferPool implements HostAllocator {
  private readonly free = new Map<number, ArrayBuffer[]>();
  /** Released buffers in release order, for dropping the oldest when over `maxBytes`. */
  private readonly order: ArrayBuffer[] = [];
  private readonly live = new WeakSet<ArrayBuffer>();
  private stats = { allocatedBytes: 0, reusedBytes: 0, pooledBytes: 0, liveBytes: 0, peakLiveBytes: 0 };

  /**
   * An empty pool.
   * @param maxBytes most bytes held for reuse (0 turns reuse off).
   */
  constructor(readonly maxBytes: number) {}

  /** A float32 array of `n` elements; contents unspecified when reused. */
  float32(n: number): Float32Array {
    return n * 4 < MIN_POOLED_BYTES || this.maxBytes === 0 ? new Float32Array(n) : new Float32Array(this.take(n * 4));
  }

  /** An int32 array of `n` elements; contents unspecified when reused. */
  int32(n: number): Int32Array {
    return n * 4 < MIN_POOLED_BYTES || this.maxBytes === 0 ? new Int32Array(n) : new Int32Array(this.take(n * 4));
  }

  /** Give back the buffer behind `data` if this pool handed it out and it is not back yet; ignored otherwise. */
  release(data: Float32Array | Int32Array): void {
    const buffer = data.buffer as ArrayBuffer;
    if (!this.live.has(buffer)) return;
    this.live.delete(buffer);
    const bytes = buffer.byteLength;
    this.stats.liveBytes -= bytes;
    if (bytes > this.maxBytes) return;
    while (this.stats.pooledBytes + bytes > this.maxBytes) this.drop(this.order[0]!);
    let list = this.free.get(bytes);
    if (!list) this.free.set(bytes, (list = []));
    list.push(buffer);
    this.order.push(buffer);
    this.stats.pooledBytes += bytes;
  }

  /** Counters since creation (peak since the last {@link resetPeak}). */
  snapshot(): PoolStats {
    return { ...this.stats };
  }

  /** Start a new peak measurement at the current live bytes. */
  resetPeak(): void {
    this.stats.peakLiveBytes = this.stats.liveBytes;
  }

  /** Forget every pooled buffer (their memory goes back to the garbage collector). */
  clear(): void {
    while (this.order.length > 0) this.drop(this.order[0]!);
  }

  private take(bytes: number): ArrayBuffer {
    const list = this.free.get(bytes);
    let buffer = list?.pop();
    if (buffer) {
      this.order.splice(this.order.lastIndexOf(buffer), 1);
      this.stats.pooledBytes -= bytes;
      this.stats.reusedBytes += bytes;
    } else {
      buffer = new ArrayBuffer(bytes);
      this.stats.allocatedBytes += bytes;
    }
    this.live.add(buffer);
    this.stats.liveBytes += bytes;
    if (this.stats.liveBytes > this.stats.peakLiveBytes) this.stats.peakLiveBytes = this.stats.liveBytes;
    return buffer;
  }

  private drop(buffer: ArrayBuffer): void {
    const i = this.order.indexOf(buffer);
    if (i >= 0) this.order.splice(i, 1);
    const list = this.free.get(buffer.byteLength)!;
    list.splice(list.indexOf(buffer), 1);
    this.stats.pooledBytes -= buffer.byteLength;
  }
}
