/**
 * @packageDocumentation
 * kvfold's WebAssembly SIMD kernels: `accumulate`, `adjacentCosine`, `gather`, `mergeSegments`,
 * `mergeIntoNeighbours`, `topK`, `linkSegments`, `mergeSimilar` (KVMerger's exact budget: the cosines, link
 * selection, segment walk and merge of one head at a time) and the content checks of the merge plans and of
 * `linkSegments`' links, written in AssemblyScript (`assembly/kernels.ts`) and committed built
 * (`wasm/kernels.wasm`). They compute what core's TypeScript kernels of the same names compute (accumulate,
 * adjacentCosine and gather bit for bit, topK and linkSegments the same integers, the merges in float32
 * lanes within 1e-5), on tensors that live in a `WebAssembly.Memory` the caller owns: the module imports its
 * memory (`env.memory`) and nothing else, has no data segments, no globals and no allocator, so it never
 * writes outside the arrays it is handed. Every pointer argument is a byte offset into that memory.
 *
 * Used by the reference backend (tensors in a shared memory of its own) and by the tfjs backend (tensors in
 * the tfjs-backend-wasm engine's heap, through custom tfjs kernels). Depends on nothing.
 */
import { readFileSync } from 'node:fs';

/** What the kernels module exports; every pointer is a byte offset into the memory it was instantiated over. */
export interface WasmKernelExports {
  /** core's adjacentCosine: keys `[H, L, D]` at `k` into `[H, L - 1]` at `out`. */
  adjacentCosine(k: number, out: number, H: number, L: number, D: number): void;
  /** core's gather: the five layer arrays, the index, H, L, D, k, the five output arrays. */
  gather(...args: number[]): void;
  /** core's mergeSegments: layer, plan, sizes, value scale, output layer, scratch (see `assembly/kernels.ts`). */
  mergeSegments(...args: number[]): void;
  /** core's mergeIntoNeighbours: layer, plan, sizes, output layer, scratch (see `assembly/kernels.ts`). */
  mergeIntoNeighbours(...args: number[]): void;
  /** 1 when a mergeSegments plan passes core's content checks, else 0: seg, piv, sig, counts, H, L, M, byCount. */
  screenSegments(...args: number[]): number;
  /** 1 when a mergeIntoNeighbours plan passes core's content checks, else 0: keep, source, targetStart, targetCount, gate, H, L, K, S. */
  screenNeighbours(...args: number[]): number;
  /** core's accumulate: `a + b` of `n` float32 elements into `out` (bit-identical). */
  accumulate(a: number, b: number, out: number, n: number): void;
  /** core's linkSegments: links `[H, C]`, scores `[H, L]`, segment out `[H, L]`, pivot out `[H, L - C]`, H, L, C. */
  linkSegments(links: number, scores: number, seg: number, piv: number, H: number, L: number, C: number): void;
  /** 1 when each head's links `[H, C]` are strictly ascending within [0, L - 2], else 0: links, H, L, C. */
  screenLinks(links: number, H: number, L: number, C: number): number;
  /** core's topK: scores, out, H, L, from, to, k, then scratch `cand` (int32 `[to - from]`) and `hist` (int32 `[TOPK_HIST_WORDS]`). */
  topK(scores: number, out: number, H: number, L: number, from: number, to: number, k: number, cand: number, hist: number): void;
  /**
   * core's mergeSimilar, head by head (adjacentCosine, the eligibility mask, topK, linkSegments, mergeSegments on
   * one head at a time): layer, protect `[H, P]`, H, L, D, P, count, minSimilarity, sigma, byCount, output
   * layer, lowest `[H]`, eligible `[H]`, then one scratch block of {@link WasmKernelExports.mergeSimilarScratch} bytes.
   */
  mergeSimilar(...args: number[]): void;
  /** 1 when every protected slot of `prot` `[H, P]` is in [0, L) and (byCount) every count `[H, L]` is >= 1, else 0: prot, counts, H, L, P, byCount. */
  screenSimilar(prot: number, counts: number, H: number, L: number, P: number, byCount: number): number;
  /** Bytes of mergeSimilar's scratch block for heads of `L` slots merging `C` links each. */
  mergeSimilarScratch(L: number, C: number): number;
  /** e^x as mergeSegments's Gaussian weights compute it (within 1 ulp of `Math.exp`; exported for tests). */
  gaussianExp(x: number): number;
}

/**
 * Int32 words of {@link WasmKernelExports.topK}'s `hist` scratch: four 2048-bin histograms of the first digit, then
 * the 16-entry shuffle table (four words an entry) the kernel builds in it.
 */
export const TOPK_HIST_WORDS = 4 * 2048 + 16 * 4;

/** The part of a `WebAssembly.Memory` the kernels need (this project's TypeScript libs declare no WebAssembly types). */
export interface KernelMemory {
  /** The memory's bytes. */
  readonly buffer: ArrayBufferLike;
}

/**
 * Which memory a module instance imports: `shared` (a `SharedArrayBuffer`, which never detaches when it
 * grows) or `unshared` (an ordinary growable memory, such as an Emscripten module's heap).
 */
export type KernelMemoryKind = 'shared' | 'unshared';

interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: Record<string, unknown> };
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

const modules = new Map<KernelMemoryKind, object>();

/**
 * The compiled kernels module for `kind` of memory, compiled once per process. The committed binary imports
 * a shared memory; the `unshared` module is the same binary with only its memory import's limits rewritten
 * (see {@link unsharedMemoryImport}), so both run exactly the same code.
 * @throws Error when the `.wasm` file is missing or this engine cannot compile it (no wasm SIMD, or no
 *   shared memory for `shared`); backends catch it and run their other kernels.
 */
export function kernelModule(kind: KernelMemoryKind): object {
  let m = modules.get(kind);
  if (!m) {
    const bytes = new Uint8Array(readFileSync(new URL('../wasm/kernels.wasm', import.meta.url)));
    m = new WA.Module(kind === 'shared' ? bytes : unsharedMemoryImport(bytes));
    modules.set(kind, m);
  }
  return m;
}

/**
 * The kernels instantiated over `memory` (a `WebAssembly.Memory` of the given kind), its only import.
 * @throws Error as {@link kernelModule}, or when `memory` is not a `WebAssembly.Memory` of that kind.
 */
export function instantiateKernels(memory: KernelMemory, kind: KernelMemoryKind): WasmKernelExports {
  return new WA.Instance(kernelModule(kind), { env: { memory } }).exports as unknown as WasmKernelExports;
}

/** An unsigned LEB128 number at `at`: its value and the offset after it. */
function leb(bytes: Uint8Array, at: number): [value: number, next: number] {
  let value = 0;
  let scale = 1;
  for (;;) {
    const b = bytes[at++];
    if (b === undefined) throw new Error('kernels.wasm: truncated LEB128 number');
    value += (b & 0x7f) * scale;
    scale *= 128;
    if (b < 0x80) return [value, at];
  }
}

/** `value` as unsigned LEB128. */
function toLeb(value: number): number[] {
  const out: number[] = [];
  do {
    let b = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) b |= 0x80;
    out.push(b);
  } while (value > 0);
  return out;
}

/** The parts one after another, each copied with one `set`. */
function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * `bytes` (a wasm binary) with its `env.memory` import changed from shared with a maximum (limits flag 3,
 * what AssemblyScript's `--sharedMemory` emits) to unshared with no maximum (flag 0; the minimum kept), so
 * it can be instantiated over any ordinary memory whatever its maximum. Only the import section changes:
 * the code is byte for byte the committed module's (the kernels use no atomics).
 * @throws Error when the binary has no shared `env.memory` import.
 */
export function unsharedMemoryImport(bytes: Uint8Array): Uint8Array {
  let at = 8;
  while (at < bytes.length) {
    const id = bytes[at]!;
    const [size, body] = leb(bytes, at + 1);
    if (id === 2) {
      let [count, p] = leb(bytes, body);
      for (; count > 0; count--) {
        const [modLen, modAt] = leb(bytes, p);
        const mod = new TextDecoder().decode(bytes.subarray(modAt, modAt + modLen));
        const [fieldLen, fieldAt] = leb(bytes, modAt + modLen);
        const field = new TextDecoder().decode(bytes.subarray(fieldAt, fieldAt + fieldLen));
        const kindAt = fieldAt + fieldLen;
        const kind = bytes[kindAt];
        if (kind === 2 && mod === 'env' && field === 'memory') {
          if (bytes[kindAt + 1] !== 3) throw new Error('kernels.wasm: its env.memory import is not shared with a maximum');
          const [min, afterMin] = leb(bytes, kindAt + 2);
          const [, afterMax] = leb(bytes, afterMin);
          const limits = [0, ...toLeb(min)];
          const payloadSize = kindAt + 1 - body + limits.length + (body + size - afterMax);
          return concat([bytes.subarray(0, at), new Uint8Array([2, ...toLeb(payloadSize)]), bytes.subarray(body, kindAt + 1), new Uint8Array(limits), bytes.subarray(afterMax)]);
        }
        // Skip this import's description to reach the next one.
        if (kind === 0) p = leb(bytes, kindAt + 1)[1];
        else if (kind === 1 || kind === 2) {
          const limitsAt = kind === 1 ? kindAt + 2 : kindAt + 1;
          const flags = bytes[limitsAt]!;
          p = leb(bytes, limitsAt + 1)[1];
          if (flags & 1) p = leb(bytes, p)[1];
        } else p = kindAt + 3;
      }
    }
    at = body + size;
  }
  throw new Error('kernels.wasm: no env.memory import');
}

export { HEAD_SPLITS, KernelThreads, LINK_SEGMENTS_BYTES_PER_SLOT, SPLIT_KERNELS, THREAD_MIN_BYTES, TOPK_BYTES_PER_SCORE, type HeadSplit, type SplitKernel, type ThreadHeap } from './threads.js';
