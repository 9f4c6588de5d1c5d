import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hostTensor, selectTopFloat32, topKKernel } from '../src/index.js';

describe('topK (reference, radix selection on float32 keys)', () => {
  /** Scores on few levels or continuous, with NaN, both zeros, both infinities and subnormals. */
  const special = [Number.NaN, -0, 0, Infinity, -Infinity, 1e-45, -1e-45, 3.4e38, -3.4e38];
  const row = fc.oneof(
    fc.array(fc.integer({ min: -2, max: 2 }), { minLength: 1, maxLength: 2500 }),
    fc.array(fc.oneof(fc.float(), fc.constantFrom(...special)), { minLength: 1, maxLength: 2500 }),
  );

  it('matches a full sort (score descending, NaN lowest, -0 equal to 0, ties to the lower slot)', () => {
    fc.assert(
      fc.property(fc.array(row, { minLength: 1, maxLength: 3 }), fc.nat(), fc.nat(), fc.nat(), (rows, a, b, c) => {
        const L = Math.min(...rows.map((r) => r.length));
        const H = rows.length;
        const data = Float32Array.from(rows.flatMap((r) => r.slice(0, L)));
        const from = a % (L + 1);
        const to = from + (b % (L - from + 1));
        const k = c % (to - from + 1);
        const out = topKKernel.reference({ scores: hostTensor('float32', [H, L], data), k, from, to, heads: H, length: L });
        const rank = (x: number) => (Number.isNaN(x) ? -Infinity : x);
        for (let h = 0; h < H; h++) {
          const idx = Array.from({ length: to - from }, (_, i) => from + i);
          idx.sort((p, q) => rank(data[h * L + q]!) - rank(data[h * L + p]!) || p - q);
          expect(Array.from(out.data.subarray(h * k, (h + 1) * k))).toEqual(idx.slice(0, k).sort((p, q) => p - q));
        }
      }),
      { numRuns: 200 },
    );
  });

  it('selectTopFloat32 picks what the kernel picks on a one-row window, for any k (clamped)', () => {
    fc.assert(
      fc.property(row, fc.integer({ min: -3, max: 2600 }), (r, k) => {
        const data = Float32Array.from(r);
        const n = Math.max(0, Math.min(data.length, k));
        const expected = topKKernel.reference({ scores: hostTensor('float32', [1, data.length], data), k: n, from: 0, to: data.length, heads: 1, length: data.length });
        expect(Array.from(selectTopFloat32(data, k))).toEqual(Array.from(expected.data));
      }),
      { numRuns: 200 },
    );
    expect(Array.from(selectTopFloat32(Float32Array.of(1, Number.NaN, -0, 0, 2), 3))).toEqual([0, 2, 4]);
  });
});
