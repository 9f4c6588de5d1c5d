/**
 * Host arrays a policy reuses from call to call (its plan's rows, selections and flags). A policy compressing
 * layer after layer asks for the same few sizes again and again, and fresh multi-megabyte arrays are fresh pages:
 * their first writes cost page faults on top of the writes themselves (KVMerger's planning at 32 x 16k: 8.0-9.7
 * against 10.9-14.0 ms with fresh arrays; CaM's host work 12.1-12.4 against 12.4-14.8 ms).
 *
 * An array handed out is valid until the next request for the same name, and its contents are whatever the last
 * user left: a caller writes every entry it reads. A policy whose calls can interleave at an await while arrays
 * are in use gives each call its own set ({@link HostScratchPool}).
 */
export class HostScratch {
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

/** Free {@link HostScratch} sets: each running call takes one for its whole duration and gives it back. */
export class HostScratchPool {
  private readonly free: HostScratch[] = [];

  /** A set no running call holds. */
  acquire(): HostScratch {
    return this.free.pop() ?? new HostScratch();
  }

  /** Give back a set from {@link acquire}. */
  release(scratch: HostScratch): void {
    this.free.push(scratch);
  }
}
