import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { kthLargest, selectBest } from '../src/index.js';

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
