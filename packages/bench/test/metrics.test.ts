import { describe, expect, it } from 'vitest';
import {
  accuracy,
  answerMatches,
  copyFloor,
  growthExponent,
  linearFit,
  logProbability,
  mean,
  measureCopyBandwidth,
  median,
  perplexity,
  scalingVerdict,
} from '../src/index.js';

describe('metrics on known inputs', () => {
  it('exact match ignores leading whitespace and needs the whole answer', () => {
    expect(answerMatches('73914', '73914')).toBe(true);
    expect(answerMatches('73914', ' 73914. The')).toBe(true);
    expect(answerMatches('73914', '7391')).toBe(false);
    expect(answerMatches('73914', '73941')).toBe(false);
    expect(answerMatches('73914', 'x73914')).toBe(false);
    expect(answerMatches('', 'anything')).toBe(false);
  });

  it('accuracy, mean and median', () => {
    expect(accuracy([true, false, true, true])).toBe(0.75);
    expect(accuracy([])).toBeNaN();
    expect(mean([1, 2, 3, 10])).toBe(4);
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it('log-probability of uniform logits is -log V, so perplexity of a uniform model is V', () => {
    const V = 258;
    const logits = new Float32Array(V).fill(3.5);
    expect(logProbability(logits, 17)).toBeCloseTo(-Math.log(V), 12);
    const n = 40;
    expect(perplexity(-n * logProbability(logits, 0), n)).toBeCloseTo(V, 9);
  });

  it('log-probability matches a hand-computed softmax and is stable for huge logits', () => {
    // softmax([0, ln 3]) = [1/4, 3/4]
    expect(logProbability([0, Math.log(3)], 1)).toBeCloseTo(Math.log(0.75), 12);
    expect(logProbability([1000, 1000 + Math.log(3)], 0)).toBeCloseTo(Math.log(0.25), 9);
    expect(() => logProbability([0, 1], 2)).toThrow(RangeError);
    expect(perplexity(1, 0)).toBeNaN();
  });

  it('linear fit recovers an exact line and its R² is 1; noise lowers R²', () => {
    const xs = [1, 2, 4, 8];
    const f = linearFit(xs, xs.map((x) => 3 + 2 * x));
    expect(f.slope).toBeCloseTo(2, 12);
    expect(f.intercept).toBeCloseTo(3, 12);
    expect(f.r2).toBeCloseTo(1, 12);
    const g = linearFit([0, 1, 2, 3], [0, 2, 0, 2]);
    expect(g.slope).toBeCloseTo(0.4, 12);
    expect(g.r2).toBeCloseTo(0.2, 12);
    expect(() => linearFit([1], [1])).toThrow(RangeError);
    expect(() => linearFit([2, 2], [1, 3])).toThrow(RangeError);
  });

  it('growth exponent is 1 for linear, 2 for quadratic time', () => {
    const L = [1024, 2048, 4096, 8192, 16384, 32768];
    expect(growthExponent(L, L.map((l) => 0.01 * l))).toBeCloseTo(1, 12);
    expect(growthExponent(L, L.map((l) => 1e-6 * l * l))).toBeCloseTo(2, 12);
    expect(() => growthExponent([1, 2], [0, 1])).toThrow(RangeError);
  });

  it('scaling verdict: linear curves pass, quadratic ones do not', () => {
    const L = [1024, 2048, 4096, 8192, 16384, 32768];
    const lin = scalingVerdict(L, L.map((l) => 5 + 0.01 * l));
    expect(lin.linear).toBe(true);
    expect(lin.lengthRatio).toBe(32);
    expect(lin.fit.r2).toBeCloseTo(1, 9);
    expect(lin.exponent).toBeLessThan(1);
    const quad = scalingVerdict(L, L.map((l) => 1e-6 * l * l));
    expect(quad.linear).toBe(false);
    expect(quad.timeRatio).toBeCloseTo(1024, 9);
  });

  it('copy floor: 2 MB of traffic at 1 GB/s takes 2 ms; 8 ms measured is 25% of the floor', () => {
    const r = copyFloor({ readBytes: 1.5e6, writeBytes: 0.5e6, bandwidth: 1e9, ms: 8 });
    expect(r.floorMs).toBeCloseTo(2, 12);
    expect(r.fraction).toBeCloseTo(0.25, 12);
    expect(copyFloor({ readBytes: 1, writeBytes: 1, bandwidth: 1, ms: 0 }).fraction).toBeNaN();
  });

  it('copy bandwidth is a positive finite number', () => {
    const b = measureCopyBandwidth(1 << 20, 3);
    expect(Number.isFinite(b)).toBe(true);
    expect(b).toBeGreaterThan(0);
  });
});
