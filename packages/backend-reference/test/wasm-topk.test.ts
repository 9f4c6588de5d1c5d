// The reference backend's wasm topK against core's TypeScript radix selection (the js mode runs it): a
// selection has one right answer, so every result must be exactly the reference's, on one thread and split
// over worker threads, whatever the scores (NaN of any payload, -0, infinities, subnormals, long runs of ties).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { HostTensor } from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { f32, rng } from './util.js';

const wasmKernels = createReferenceKernels({ threads: 1 });
const jsKernels = createReferenceKernels({ kernels: 'js' });
// Two and three threads splitting every call (threadMinBytes 0): head ranges and per-thread scratch on small shapes too.
const threaded = [createReferenceKernels({ threads: 2, threadMinBytes: 0 }), createReferenceKernels({ threads: 3, threadMinBytes: 0 })];
const onAll = [wasmKernels, ...threaded];

/** Float32 bit patterns of special scores: NaNs (quiet, signalling, negative, odd payloads), zeros, infinities, subnormals, extremes. */
const SPECIAL_BITS = [0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fffffff, 0xffffffff, 0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x00000001, 0x80000001, 0x007fffff, 0x807fffff, 0x7f7fffff, 0xff7fffff];

type Mode = 'levels' | 'specials' | 'continuous' | 'bits' | 'clustered';
const MODES: readonly Mode[] = ['levels', 'specials', 'continuous', 'bits', 'clustered'];

/** `n` float32 scores of a kind: few levels (ties everywhere), specials among values, continuous, raw bit patterns, or one narrow band (one first-digit bin). */
function scores(n: number, mode: Mode, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < n; i++) {
    if (mode === 'levels') out[i] = [-1, 0, 0.5, 1, 2][Math.floor(r() * 5)]!;
    else if (mode === 'specials') {
      if (r() < 0.3) u[i] = SPECIAL_BITS[Math.floor(r() * SPECIAL_BITS.length)]!;
      else out[i] = r() < 0.5 ? Math.floor(r() * 4) - 2 : (r() - 0.5) * 8;
    } else if (mode === 'continuous') out[i] = Math.exp(3 * (r() - 0.5)) * 1e-3;
    else if (mode === 'bits') u[i] = Math.floor(r() * 2 ** 32) >>> 0;
    else out[i] = 1 + Math.floor(r() * 40) * 2 ** -21;
  }
  return out;
}

/** The winners' shape and every index. */
function plainOf(t: HostTensor): number[] {
  return [...t.shape, ...Array.from(t.data)];
}

/** topK of `data` ([H, L]) on every wasm backend, each checked equal to core's reference. */
function expectSame(H: number, L: number, data: Float32Array, k: number, from: number, to: number): void {
  const host = f32([H, L], data);
  const want = plainOf(jsKernels.topK(jsKernels.fromHost(host), k, from, to));
  for (const kv of onAll) {
    const s = kv.fromHost(host);
    const out = kv.topK(s, k, from, to);
    expect(plainOf(out), `${kv.threads} threads, H=${H} L=${L} k=${k} [${from}, ${to})`).toEqual(want);
    kv.dispose(s, out);
  }
}

describe('reference backend: wasm topK', () => {
  it('runs in wasm mode and is named in the description', () => {
    expect(wasmKernels.describe()).toContain('topK');
  });

  it('gives exactly core’s winners (heads 1-9, lengths 0-3000, any window and k, NaN, -0, infinities, ties)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9 }),
        fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 3000 })),
        fc.constantFrom(...MODES),
        fc.nat(),
        fc.nat(),
        fc.oneof(fc.nat(), fc.constantFrom(0, 1, -1, -2, -3, -4, -5)),
        fc.integer({ min: 0, max: 0x7fffffff }),
        (H, L, mode, a, b, c, seed) => {
          const from = a % (L + 1);
          const to = from + (b % (L - from + 1));
          const m = to - from;
          // c < 0: k close to the window (m + c), where the four-at-a-time output loop hands over to the one-at-a-time one.
          const k = c < 0 ? Math.max(0, m + c) : c % (m + 1);
          expectSame(H, L, scores(H * L, mode, seed), k, from, to);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('hand cases: empty windows, k = 0 and k = window, all ties, NaN tied with -Infinity, -0 tied with 0', () => {
    expectSame(3, 0, new Float32Array(0), 0, 0, 0);
    expectSame(2, 9, scores(18, 'specials', 1), 0, 2, 7);
    expectSame(2, 9, scores(18, 'specials', 1), 5, 2, 7);
    expectSame(2, 9, scores(18, 'specials', 1), 0, 4, 4);
    // All equal: the lowest slots of the window win.
    expectSame(2, 37, new Float32Array(74).fill(0.5), 11, 3, 35);
    // The threshold at -Infinity with NaNs among the -Infinities: NaN ranks as -Infinity, ties to the lower slot.
    const neg = Float32Array.from({ length: 3 * 50 }, (_, i) => (i % 3 === 0 ? Number.NaN : i % 3 === 1 ? Number.NEGATIVE_INFINITY : i % 7 === 0 ? 1 : Number.NaN));
    for (const k of [1, 9, 10, 11, 23, 31, 49]) expectSame(3, 50, neg, k, 0, 50);
    // -0 and 0 are one score.
    const zeros = Float32Array.from({ length: 64 }, (_, i) => (i % 2 === 0 ? -0 : 0));
    for (const k of [1, 5, 31, 63]) expectSame(1, 64, zeros, k, 0, 64);
    const want = wasmKernels.topK(wasmKernels.fromHost(f32([1, 64], zeros)), 5, 0, 64);
    expect(Array.from(want.data)).toEqual([0, 1, 2, 3, 4]);
  });

  it('benchmark-sized heads (long runs of one first-digit bin, ties at the threshold)', () => {
    for (const mode of ['continuous', 'clustered', 'levels'] as const) {
      const [H, L] = [4, 16384];
      const data = scores(H * L, mode, 5);
      for (const [k, from, to] of [[4096, 0, 12288], [8191, 1, 16383], [1, 0, L], [L - 1, 0, L]] as const) expectSame(H, L, data, k, from, to);
    }
  });

  it('scores outside the heap run the TypeScript reference with the same result', () => {
    const host = f32([3, 100], scores(300, 'specials', 9));
    const outside = jsKernels.fromHost(host);
    expect(plainOf(wasmKernels.topK(outside, 17, 5, 90))).toEqual(plainOf(jsKernels.topK(outside, 17, 5, 90)));
  });

  it('a large call is split over the workers at the default threshold, with the same winners', async () => {
    const kv = createReferenceKernels({ threads: 2 });
    try {
      const [H, L] = [32, 4096];
      const host = f32([H, L], scores(H * L, 'continuous', 3));
      const want = plainOf(jsKernels.topK(jsKernels.fromHost(host), 1024, 0, 3072));
      const s = kv.fromHost(host);
      // The worker starts asynchronously and a call never waits for it, so try until it has taken part.
      const deadline = Date.now() + 20_000;
      let calls = 0;
      while (kv.workerChunks() === 0 && Date.now() < deadline) {
        expect(plainOf(kv.topK(s, 1024, 0, 3072))).toEqual(want);
        calls++;
        await new Promise((r) => setTimeout(r, 5));
      }
      expect(kv.workerChunks()).toBeGreaterThan(0);
      expect(calls).toBeGreaterThan(0);
      // A small call stays on the calling thread.
      const before = kv.workerChunks();
      const small = kv.fromHost(f32([4, 256], scores(1024, 'continuous', 4)));
      expect(plainOf(kv.topK(small, 100, 0, 256))).toEqual(plainOf(jsKernels.topK(jsKernels.fromHost(f32([4, 256], scores(1024, 'continuous', 4))), 100, 0, 256)));
      expect(kv.workerChunks()).toBe(before);
    } finally {
      kv.close();
    }
  });
});
