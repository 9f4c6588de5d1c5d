import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { MIN_SIGMA, eq4Sigma, planLayer, planSigmas, rmsSigma } from '../src/index.js';

describe('rmsSigma', () => {
  it('is the root mean squared distance of the non-pivot members', () => {
    expect(rmsSigma([9, 16], 5)).toBeCloseTo(Math.sqrt(12.5), 12);
  });
  it('falls back to the given value when every member equals the pivot, and for singletons', () => {
    expect(rmsSigma([0, 0], 5)).toBe(5);
    expect(rmsSigma([], 3)).toBe(3);
  });
  it('never goes below MIN_SIGMA', () => {
    expect(rmsSigma([1e-30], 5)).toBe(MIN_SIGMA);
  });
});

describe('eq4Sigma', () => {
  it('stays inside (1/(sqrt2 |S|), 1/sqrt2] whatever the start and distances', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0, max: 1e4, noNaN: true }), { minLength: 1, maxLength: 6 }), fc.double({ min: 0.1, max: 10, noNaN: true }), fc.integer({ min: 1, max: 30 }), (d2, start, it) => {
        const s = eq4Sigma(d2, start, it);
        const size = d2.length + 1;
        expect(s).toBeGreaterThanOrEqual(1 / (Math.SQRT2 * size) - 1e-12);
        expect(s).toBeLessThanOrEqual(Math.SQRT1_2 + 1e-12);
      }),
      { numRuns: 50 },
    );
  });

  it('reaches the fixed point of sigma = sum g / (sqrt 2 |S|) where the map contracts', () => {
    // two members at squared distances 0.01 and 4 from the pivot
    const d2 = [0.01, 4];
    const s = eq4Sigma(d2, 5, 100);
    const g = 1 + d2.reduce((a, d) => a + Math.exp(-d / (2 * s * s)), 0);
    expect(Math.abs(s - g / (Math.SQRT2 * 3))).toBeLessThan(1e-9);
    // one step from 5 by hand: g = 1 + exp(-0.01/50) + exp(-4/50)
    expect(eq4Sigma(d2, 5, 1)).toBeCloseTo((1 + Math.exp(-0.01 / 50) + Math.exp(-4 / 50)) / (Math.SQRT2 * 3), 12);
  });
  it('returns the start for a singleton', () => {
    expect(eq4Sigma([], 5, 10)).toBe(5);
  });
});

describe('planSigmas', () => {
  it('computes per-set bandwidths from host keys, fixed for singletons', () => {
    // one head, 4 slots, dims 2; set {0,1,2} (pivot 1 by score), singleton {3}
    const keys = { data: [0, 0, 3, 4, 3, 0, 9, 9], headDim: 2 };
    const plan = planLayer({ heads: 1, length: 4, scores: [0, 1, 0, 0], cosine: [0.9, 0.9, 0.1], target: 2, protection: [new Uint8Array(4)], mode: 'exact', eps: 0.75, minSimilarity: -1, sets: 'per-head' });
    expect(Array.from(plan.pivot)).toEqual([1, 3]);
    const s = planSigmas(plan, { mode: 'rms', value: 7 }, keys);
    // distances^2 to the pivot (3,4): slot 0 -> 25, slot 2 -> 16
    expect(s[0]).toBeCloseTo(Math.sqrt(20.5), 5);
    expect(s[1]).toBe(7);
    expect(Array.from(planSigmas(plan, { mode: 'fixed', value: 5 }))).toEqual([5, 5]);
    expect(() => planSigmas(plan, { mode: 'eq4', value: 5, iterations: 3 })).toThrow(/needs the keys/);
  });
});
