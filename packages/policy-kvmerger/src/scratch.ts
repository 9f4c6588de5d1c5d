/**
 * Host arrays of one KVMerger plan, reused from call to call: the links' ranking rows, the selections, the
 * protection classes, the segment and pivot rows and the sigmas (about 7 MiB at 32 x 16,384). Fresh arrays of
 * that size are fresh pages, and their first writes cost page faults on top of the writes themselves.
 *
 * An array handed out is valid until the next request for the same name; a caller writes every entry it reads
 * (the arrays are not cleared). {@link PlanScratchPool} gives each running call its own set.
 */
export class PlanScratch {
  private readonly arrays = new Map<string, Int32Array | Float32Array | Uint8Array>();

  /** `n` int32 entries under `name`. */
  int32(name: string, n: number): Int32Array {
    return this.take(name, n, (m) => new Int32Array(m)) as Int32Array;
  }

  /** `n` float32 entries under `name`. */
  float32(name: string, n: number): Float32Array {
    return this.take(name, n, (m) => new Float32Array(m)) as Float32Array;
  }

  /** `n` uint8 entries under `name`. */
  uint8(name: string, n: number): Uint8Array {
    return this.take(name, n, (m) => new Uint8Array(m)) as Uint8Array;
  }

  private take(name: string, n: number, make: (n: number) => Int32Array | Float32Array | Uint8Array): Int32Array | Float32Array | Uint8Array {
    let a = this.arrays.get(name);
    // Grown, never shrunk: a policy sees the same few shapes (one per layer length) over and over.
    if (a === undefined || a.length < n) {
      a = make(n);
      this.arrays.set(name, a);
    }
    return a.subarray(0, n);
  }
}

/**
 * Free {@link PlanScratch} sets of one policy. A compression awaits the backend between planning steps, so
 * two layers may be compressed at once; each takes its own set for the whole call.
 */
export class PlanScratchPool {
  private readonly free: PlanScratch[] = [];

  /** A set no running call holds. */
  acquire(): PlanScratch {
    return this.free.pop() ?? new PlanScratch();
  }

  /** Give back a set from {@link acquire}. */
  release(scratch: PlanScratch): void {
    this.free.push(scratch);
  }
}
