/**
 * Statistics for accuracy claims: Wilson score intervals for one accuracy, and paired comparisons of
 * two policies scored on the same items (exact McNemar test, paired bootstrap of the difference), each
 * with a verdict that says "not significant" when the data do not support a difference.
 */
import { createRng } from '@kvfold/core';

/** z of a two-sided 95% interval (the 0.975 quantile of the standard normal). */
export const Z95 = 1.959963984540054;

function checkCount(name: string, value: number, max = Infinity): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`${name} must be an integer in [0, ${max === Infinity ? 'Infinity' : max}], got ${value}`);
  }
}

/** An accuracy with its sample size and confidence interval. */
export interface ProportionInterval {
  /** Successes. */
  readonly successes: number;
  /** Trials (items). */
  readonly n: number;
  /** Point estimate successes / n (NaN when n = 0). */
  readonly p: number;
  /** Lower end of the interval (NaN when n = 0). */
  readonly lo: number;
  /** Upper end of the interval (NaN when n = 0). */
  readonly hi: number;
}

/**
 * Wilson score interval of a proportion (default 95%). Unlike the normal ("Wald") interval it stays
 * inside [0, 1] and keeps its coverage at 0 or n successes and for small n. n = 0 gives NaNs (no
 * data, no interval) rather than an error, so empty report cells stay empty.
 * @throws RangeError when the counts are not integers with 0 <= successes <= n, or z <= 0.
 */
export function wilsonInterval(successes: number, n: number, z = Z95): ProportionInterval {
  checkCount('n', n);
  checkCount('successes', successes, n);
  if (!(z > 0) || !Number.isFinite(z)) throw new RangeError(`z must be a finite number > 0, got ${z}`);
  if (n === 0) return { successes, n, p: Number.NaN, lo: Number.NaN, hi: Number.NaN };
  const p = successes / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / denom;
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / denom;
  // Clamp rounding noise at the ends (k = 0 gives centre === half analytically).
  return { successes, n, p, lo: successes === 0 ? 0 : Math.max(0, centre - half), hi: successes === n ? 1 : Math.min(1, centre + half) };
}

/** Wilson interval of boolean outcomes. */
export function accuracyInterval(outcomes: readonly boolean[], z = Z95): ProportionInterval {
  return wilsonInterval(outcomes.filter(Boolean).length, outcomes.length, z);
}

/** "85% [77-91%] n=100": a percentage with its interval and sample size, for reports. */
export function formatInterval(ci: ProportionInterval, digits = 0): string {
  if (ci.n === 0) return 'n/a (n=0)';
  const pc = (x: number) => (100 * x).toFixed(digits);
  return `${pc(ci.p)}% [${pc(ci.lo)}-${pc(ci.hi)}%] n=${ci.n}`;
}

function logChoose(n: number, k: number): number {
  let s = 0;
  for (let i = 1; i <= k; i++) s += Math.log(n - k + i) - Math.log(i);
  return s;
}

/**
 * Two-sided exact McNemar test: `b` items only A got right, `c` only B got right. Under "no difference"
 * each discordant item is A's with probability 1/2, so the p-value is twice the binomial tail of
 * min(b, c) in b + c fair trials (capped at 1). No discordant items gives p = 1.
 * @throws RangeError for counts that are not non-negative integers.
 */
export function mcnemarExact(b: number, c: number): number {
  checkCount('b', b);
  checkCount('c', c);
  const n = b + c;
  if (n === 0) return 1;
  const k = Math.min(b, c);
  let tail = 0;
  for (let i = 0; i <= k; i++) tail += Math.exp(logChoose(n, i) - n * Math.LN2);
  return Math.min(1, 2 * tail);
}

/** Verdict of a paired comparison at the 5% level. */
export type PairedVerdict = 'A better' | 'B better' | 'not significant';

/** Result of {@link comparePaired}. */
export interface PairedComparison {
  /** Paired items. */
  readonly n: number;
  /** Accuracy of A and its Wilson interval. */
  readonly a: ProportionInterval;
  /** Accuracy of B and its Wilson interval. */
  readonly b: ProportionInterval;
  /** Accuracy of A minus accuracy of B. */
  readonly difference: number;
  /** Items only A got right. */
  readonly onlyA: number;
  /** Items only B got right. */
  readonly onlyB: number;
  /** Two-sided exact McNemar p-value. */
  readonly pValue: number;
  /** 95% paired-bootstrap interval of the difference. */
  readonly differenceInterval: readonly [number, number];
  /** `A better` / `B better` when p < alpha, else `not significant`. */
  readonly verdict: PairedVerdict;
}

/** Options of {@link comparePaired} and {@link pairedBootstrap}. */
export interface PairedOptions {
  /** Significance level (default 0.05). */
  readonly alpha?: number;
  /** Bootstrap resamples (default 2000). */
  readonly resamples?: number;
  /** Seed of the bootstrap's generator (default 0): the same inputs always give the same interval. */
  readonly seed?: number;
}

function checkPaired(a: readonly boolean[], b: readonly boolean[]): void {
  if (a.length !== b.length) throw new RangeError(`paired outcomes must have equal lengths (one per item), got ${a.length} and ${b.length}`);
}

/**
 * Percentile interval (default 95%) of accuracy(A) - accuracy(B) over `resamples` bootstrap resamples
 * of the items (each resample keeps the pairs together). Seeded, so reproducible.
 * @throws RangeError for unequal lengths, no items, or a resample count below 100.
 */
export function pairedBootstrap(a: readonly boolean[], b: readonly boolean[], options: PairedOptions = {}): [number, number] {
  checkPaired(a, b);
  const n = a.length;
  if (n === 0) throw new RangeError('pairedBootstrap needs at least one paired item');
  const resamples = options.resamples ?? 2000;
  if (!Number.isInteger(resamples) || resamples < 100) throw new RangeError(`resamples must be an integer >= 100, got ${resamples}`);
  const alpha = options.alpha ?? 0.05;
  if (!(alpha > 0 && alpha < 1)) throw new RangeError(`alpha must be in (0, 1), got ${alpha}`);
  const d = Int8Array.from(a, (x, i) => (x ? 1 : 0) - (b[i] ? 1 : 0));
  const rng = createRng(options.seed ?? 0);
  const diffs = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += d[rng.int(n)];
    diffs[r] = s / n;
  }
  diffs.sort();
  const at = (q: number) => diffs[Math.min(resamples - 1, Math.max(0, Math.round(q * (resamples - 1))))];
  return [at(alpha / 2), at(1 - alpha / 2)];
}

/**
 * Compare two policies on the same items: accuracies with Wilson intervals, the exact McNemar p-value,
 * a paired-bootstrap interval of the difference, and a verdict that is `not significant` unless
 * p < alpha (default 0.05).
 * @throws RangeError for unequal lengths or no items.
 */
export function comparePaired(a: readonly boolean[], b: readonly boolean[], options: PairedOptions = {}): PairedComparison {
  checkPaired(a, b);
  if (a.length === 0) throw new RangeError('comparePaired needs at least one paired item');
  let onlyA = 0;
  let onlyB = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] && !b[i]) onlyA++;
    else if (!a[i] && b[i]) onlyB++;
  }
  const alpha = options.alpha ?? 0.05;
  const pValue = mcnemarExact(onlyA, onlyB);
  const ia = accuracyInterval(a);
  const ib = accuracyInterval(b);
  const verdict: PairedVerdict = pValue < alpha ? (onlyA > onlyB ? 'A better' : 'B better') : 'not significant';
  return { n: a.length, a: ia, b: ib, difference: ia.p - ib.p, onlyA, onlyB, pValue, differenceInterval: pairedBootstrap(a, b, options), verdict };
}
