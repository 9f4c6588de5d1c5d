// The reference backend's wasm linkSegments and accumulate against core's TypeScript (the js mode runs it):
// integer plans and float32 sums have one right answer, so every result must be exactly the reference's, on
// one thread and split over worker threads, and links the TypeScript check refuses must be refused the same way.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { HostTensor } from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { f32, i32, rng } from './util.js';

const wasmKernels = createReferenceKernels({ threads: 1 });
const jsKernels = createReferenceKernels({ kernels: 'js' });
// Two and three threads splitting every call (threadMinBytes 0): head ranges on small shapes too.
const threaded = [createReferenceKernels({ threads: 2, threadMinBytes: 0 }), createReferenceKernels({ threads: 3, threadMinBytes: 0 })];
const onAll = [wasmKernels, ...threaded];

/** Scores with ties, NaN, infinities and signed zeros among ordinary values. */
function scores(n: number, r: () => number): Float32Array {
  const specials = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 0, -0, 1, 1];
  return Float32Array.from({ length: n }, () => (r() < 0.3 ? specials[Math.floor(r() * specials.length)]! : Math.floor(r() * 8) / 4 - 1));
}

/** `count` distinct links of `[0, L - 2]` per head, ascending, row-major `[H, count]`. */
function links(H: number, L: number, count: number, r: () => number): Int32Array {
  const out = new Int32Array(H * count);
  for (let h = 0; h < H; h++) {
    const all = Array.from({ length: Math.max(0, L - 1) }, (_, i) => i);
    for (let i = all.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [all[i], all[j]] = [all[j]!, all[i]!];
    }
    out.set(all.slice(0, count).sort((a, b) => a - b), h * count);
  }
  return out;
}

/** Shape and contents. */
function plainOf(t: HostTensor): number[] {
  return [...t.shape, ...Array.from(t.data)];
}

/** The call's error message, or its segment and pivot. */
function outcome(f: () => { segment: HostTensor; pivot: HostTensor }): string | number[][] {
  try {
    const o = f();
    return [plainOf(o.segment), plainOf(o.pivot)];
  } catch (e) {
    return (e as Error).message;
  }
}

const shape = fc.record({ H: fc.integer({ min: 1, max: 5 }), L: fc.integer({ min: 0, max: 70 }), share: fc.double({ min: 0, max: 1, noNaN: true }), seed: fc.integer() });

describe('reference backend: wasm linkSegments', () => {
  it('runs in wasm mode and is named in the description', () => {
    expect(wasmKernels.describe()).toContain('linkSegments');
    expect(wasmKernels.kernels().find((i) => i.name === 'linkSegments')?.runs).toBe('backend');
  });

  it("is exactly core's reference on random links and scores, on one thread and split over workers", () => {
    fc.assert(
      fc.property(shape, ({ H, L, share, seed }) => {
        const r = rng(seed);
        const count = Math.floor(share * Math.max(0, L - 1));
        const l = i32([H, count], links(H, L, count, r));
        const s = f32([H, L], scores(H * L, r));
        const want = outcome(() => jsKernels.linkSegments(jsKernels.fromHost(l), jsKernels.fromHost(s)));
        expect(typeof want).not.toBe('string');
        for (const kv of onAll) expect(outcome(() => kv.linkSegments(kv.fromHost(l), kv.fromHost(s))), `${kv.threads} threads`).toEqual(want);
      }),
      { numRuns: 150 },
    );
  });

  it('refuses a corrupted link list with the same error as the TypeScript check (the wasm screen)', () => {
    let refused = 0;
    fc.assert(
      fc.property(shape, fc.nat(), fc.integer({ min: -3, max: 80 }), ({ H, L, share, seed }, at, value) => {
        const r = rng(seed);
        const count = Math.max(1, Math.floor(share * Math.max(0, L - 1)));
        if (L < 2) return;
        const data = links(H, L, count, r);
        data[at % data.length] = value;
        const l = i32([H, count], data);
        const s = f32([H, L], scores(H * L, r));
        const want = outcome(() => jsKernels.linkSegments(jsKernels.fromHost(l), jsKernels.fromHost(s)));
        if (typeof want === 'string') refused++;
        for (const kv of onAll) expect(outcome(() => kv.linkSegments(kv.fromHost(l), kv.fromHost(s)))).toEqual(want);
      }),
      { numRuns: 150 },
    );
    expect(refused).toBeGreaterThan(20);
  });
});

describe('reference backend: wasm accumulate', () => {
  it("is bit-identical to core's reference, special values included", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 45 }), fc.integer(), (H, L, seed) => {
        const r = rng(seed);
        const a = f32([H, L], scores(H * L, r));
        const b = f32([H, L], scores(H * L, r).map((x) => x * 1e-3 + r()));
        const bytes = (t: HostTensor): number[] => Array.from(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
        const want = jsKernels.accumulate(jsKernels.fromHost(a), jsKernels.fromHost(b));
        const got = wasmKernels.accumulate(wasmKernels.fromHost(a), wasmKernels.fromHost(b));
        expect(got.shape).toEqual(want.shape);
        expect(bytes(got)).toEqual(bytes(want));
      }),
      { numRuns: 100 },
    );
    expect(wasmKernels.kernels().find((i) => i.name === 'accumulate')?.runs).toBe('backend');
  });
});
