import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hostTensor, kthLargest, selectBest, topKKernel } from '../src/index.js';

/** Values drawn from few levels (many ties) or continuous, with infinities. */
const values = fc.oneof(
  fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 600 }),
  // -0 as 0: the ranking treats them as equal, and toEqual would not.
  fc.array(fc.double({ noNaN: true }).map((x) => (x === 0 ? 0 : x)), { minLength: 1, maxLength: 600 }),
  fc.array(fc.constantFrom(-Infinity, 0, 1, Infinity), { minLength: 1, maxLength: 300 }),
);

describe('kthLargest', () => {
  it('returns the k-th largest value, as a descending sort does (ties, infinities, every k)', () => {
    fc.assert(
      fc.property(values, fc.nat(), (xs, pick) => {
        const k = 1 + (pick % xs.length);
        const sorted = [...xs].sort((a, b) => b - a);
        const a = Float64Array.from(xs);
        expect(kthLargest(a, k)).toBe(sorted[k - 1]);
        // Only rearranged: the same multiset of values.
        expect(Array.from(a).sort((x, y) => x - y)).toEqual([...xs].sort((x, y) => x - y));
      }),
      { numRuns: 300 },
    );
  });

  it('picks the same set as selectBest with the threshold rule (ties to the lower index)', () => {
    fc.assert(
      fc.property(values, fc.nat(), (xs, pick) => {
        const k = pick % (xs.length + 1);
        const val = Float64Array.from(xs);
        const idx = Int32Array.from(xs, (_, i) => i);
        selectBest(idx, val, k);
        const expected = Array.from(idx.subarray(0, k)).sort((a, b) => a - b);
        const got: number[] = [];
        if (k > 0) {
          const t = kthLargest(Float64Array.from(xs), k);
          let ties = k - xs.filter((x) => x > t).length;
          xs.forEach((x, i) => {
            if (x > t || (x === t && ties-- > 0)) got.push(i);
          });
        }
        expect(got).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });
});

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
});
