import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { accuracyInterval, comparePaired, formatInterval, mcnemarExact, pairedBootstrap, wilsonInterval } from '../src/stats.js';

describe('wilsonInterval', () => {
  // Newcombe (1998), "Two-sided confidence intervals for the single proportion: comparison of seven
  // methods", Statistics in Medicine 17:857-872, Table I, method 3 (score interval without correction).
  it.each([
    [81, 263, 0.2553, 0.3662],
    [15, 148, 0.0624, 0.1605],
    [0, 20, 0, 0.1611],
    [1, 29, 0.0061, 0.1718],
  ])('%i/%i gives the published [%f, %f]', (k, n, lo, hi) => {
    const ci = wilsonInterval(k, n);
    expect(ci.p).toBeCloseTo(k / n, 12);
    expect(ci.lo).toBeCloseTo(lo, 4);
    expect(ci.hi).toBeCloseTo(hi, 4);
  });

  it('matches a hand computation: 9/10 at z = 2', () => {
    // centre = (0.9 + 4/20) / (1 + 4/10) = 1.1 / 1.4; half = 2 * sqrt(0.09/10 + 4/400) / 1.4 = 2 * sqrt(0.019) / 1.4
    const ci = wilsonInterval(9, 10, 2);
    expect(ci.lo).toBeCloseTo((1.1 - 2 * Math.sqrt(0.019)) / 1.4, 12);
    expect(ci.hi).toBeCloseTo((1.1 + 2 * Math.sqrt(0.019)) / 1.4, 12);
  });

  it('contains the estimate, stays in [0, 1], narrows with n and is symmetric under k -> n - k', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5000 }), fc.double({ min: 0, max: 1, noNaN: true }), (n, f) => {
        const k = Math.round(f * n);
        const ci = wilsonInterval(k, n);
        expect(ci.lo).toBeGreaterThanOrEqual(0);
        expect(ci.hi).toBeLessThanOrEqual(1);
        expect(ci.lo).toBeLessThanOrEqual(ci.p + 1e-12);
        expect(ci.hi).toBeGreaterThanOrEqual(ci.p - 1e-12);
        const mirror = wilsonInterval(n - k, n);
        expect(mirror.lo).toBeCloseTo(1 - ci.hi, 9);
        const wider = wilsonInterval(k, n, 2.5);
        expect(wider.hi - wider.lo).toBeGreaterThan(ci.hi - ci.lo);
        expect(wilsonInterval(4 * k, 4 * n).hi - wilsonInterval(4 * k, 4 * n).lo).toBeLessThan(ci.hi - ci.lo);
      }),
      { numRuns: 200 },
    );
  });

  it('gives NaNs for no items and rejects impossible counts', () => {
    const empty = wilsonInterval(0, 0);
    expect(Number.isNaN(empty.p) && Number.isNaN(empty.lo) && Number.isNaN(empty.hi)).toBe(true);
    expect(() => wilsonInterval(5, 4)).toThrow(/successes must be an integer in \[0, 4\]/);
    expect(() => wilsonInterval(-1, 4)).toThrow(RangeError);
    expect(() => wilsonInterval(1.5, 4)).toThrow(RangeError);
    expect(() => wilsonInterval(1, 4, 0)).toThrow(/z must be/);
  });

  it('formats with n, and counts booleans', () => {
    expect(formatInterval(wilsonInterval(0, 20))).toBe('0% [0-16%] n=20');
    expect(formatInterval(wilsonInterval(0, 0))).toBe('n/a (n=0)');
    expect(accuracyInterval([true, false, true, true])).toEqual(wilsonInterval(3, 4));
  });
});

describe('mcnemarExact', () => {
  it('matches published and hand-computed values', () => {
    // Fagerland, Lydersen & Laake (2013), BMC Med Res Methodol 13:91, airway hyper-responsiveness
    // example (b = 1, c = 7): exact conditional p = 0.070 (= 2 * (1 + 8) / 2^8).
    expect(mcnemarExact(1, 7)).toBeCloseTo(18 / 256, 12);
    expect(mcnemarExact(7, 1)).toBeCloseTo(0.0703, 4);
    // 0 vs 6: 2 / 64; 0 vs 5: 2 / 32 = 0.0625 (five one-sided discordances are never significant).
    expect(mcnemarExact(0, 6)).toBeCloseTo(2 / 64, 12);
    expect(mcnemarExact(0, 5)).toBeCloseTo(0.0625, 12);
    expect(mcnemarExact(3, 3)).toBe(1);
    expect(mcnemarExact(0, 0)).toBe(1);
  });

  it('is symmetric, in (0, 1] and falls as the split gets more lopsided', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 300 }), (b, c) => {
        const p = mcnemarExact(b, c);
        expect(p).toBe(mcnemarExact(c, b));
        expect(p).toBeGreaterThan(0);
        expect(p).toBeLessThanOrEqual(1);
        if (b < c) expect(mcnemarExact(b, c + 1)).toBeLessThanOrEqual(p + 1e-12);
      }),
      { numRuns: 200 },
    );
  });

  it('rejects counts that are not non-negative integers', () => {
    expect(() => mcnemarExact(-1, 2)).toThrow(/b must be/);
    expect(() => mcnemarExact(1, 0.5)).toThrow(/c must be/);
  });
});

describe('comparePaired and pairedBootstrap', () => {
  const repeat = (pattern: boolean[], times: number) => Array.from({ length: times }, () => pattern).flat();

  it('calls a large consistent gap significant and a small one not significant', () => {
    // 100 items: A right on 90, B on 60, B never right where A is wrong.
    const a = repeat([true], 90).concat(repeat([false], 10));
    const b = repeat([true], 60).concat(repeat([false], 40));
    const r = comparePaired(a, b);
    expect(r.onlyA).toBe(30);
    expect(r.onlyB).toBe(0);
    expect(r.pValue).toBeCloseTo(2 / 2 ** 30, 15);
    expect(r.verdict).toBe('A better');
    expect(r.difference).toBeCloseTo(0.3, 12);
    expect(r.differenceInterval[0]).toBeGreaterThan(0);
    // 3 vs 1 discordant items: p = 2 * (1 + 4) / 16 = 0.625.
    const c = [true, true, true, false, true, true];
    const d = [false, false, false, true, true, true];
    const s = comparePaired(c, d);
    expect(s.pValue).toBeCloseTo(0.625, 12);
    expect(s.verdict).toBe('not significant');
    expect(comparePaired(d, c).verdict).toBe('not significant');
    expect(comparePaired(b, a).verdict).toBe('B better');
  });

  it('bootstrap interval is seeded, brackets the observed difference and is degenerate for identical outcomes', () => {
    const a = repeat([true, false, true, true, false], 20);
    const b = repeat([true, true, false, false, false], 20);
    const ci = pairedBootstrap(a, b, { seed: 3 });
    expect(ci).toEqual(pairedBootstrap(a, b, { seed: 3 }));
    expect(ci[0]).toBeLessThanOrEqual(0.2);
    expect(ci[1]).toBeGreaterThanOrEqual(0.2);
    // Per-item differences are 0, -1, 1, 1, 0: variance 3/5 - 0.2^2 = 0.56, so the mean of 100 has
    // sd sqrt(0.0056) = 0.075 and a 95% interval about 0.29 wide.
    expect(ci[1] - ci[0]).toBeGreaterThan(0.15);
    expect(ci[1] - ci[0]).toBeLessThan(0.45);
    expect(pairedBootstrap(a, a)).toEqual([0, 0]);
  });

  it('rejects unequal lengths, no items and bad options', () => {
    expect(() => comparePaired([true], [true, false])).toThrow(/equal lengths/);
    expect(() => comparePaired([], [])).toThrow(/at least one/);
    expect(() => pairedBootstrap([true], [false], { resamples: 10 })).toThrow(/resamples/);
    expect(() => pairedBootstrap([true], [false], { alpha: 2 })).toThrow(/alpha/);
  });
});
