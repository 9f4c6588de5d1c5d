/**
 * The benchmark's metrics as pure functions, so each is tested on known inputs.
 */

/**
 * Exact match of a generated answer: the continuation, with leading whitespace removed (tokenizers that
 * emit a leading space), must start with the expected answer. An empty expected answer never matches.
 */
export function answerMatches(expected: string, generated: string): boolean {
  return expected.length > 0 && generated.trimStart().startsWith(expected);
}

/** Share of `true` in `outcomes`; NaN for none (an empty cell has no accuracy). */
export function accuracy(outcomes: readonly boolean[]): number {
  if (outcomes.length === 0) return Number.NaN;
  return outcomes.filter(Boolean).length / outcomes.length;
}

/** Arithmetic mean; NaN for an empty list. */
export function mean(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** Median (mean of the two middle values for an even count); NaN for an empty list. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** `log softmax(logits)[index]`, computed stably in float64. */
export function logProbability(logits: ArrayLike<number>, index: number): number {
  if (!Number.isInteger(index) || index < 0 || index >= logits.length) throw new RangeError(`token ${index} is outside the logits 0..${logits.length - 1}`);
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  return logits[index]! - max - Math.log(sum);
}

/** Perplexity `exp(nll / tokens)` from a summed negative log-likelihood (natural log). */
export function perplexity(nllSum: number, tokens: number): number {
  if (!(tokens > 0)) return Number.NaN;
  return Math.exp(nllSum / tokens);
}

/** An ordinary least-squares line `y = intercept + slope * x` and its coefficient of determination. */
export interface LinearFit {
  /** Value at x = 0. */
  readonly intercept: number;
  /** Change of y per unit of x. */
  readonly slope: number;
  /** R², 1 for a perfect fit (1 as well when y is constant and fitted exactly). */
  readonly r2: number;
}

/**
 * Least-squares line through the points.
 * @throws RangeError with fewer than two points, mismatched lengths, or all x equal.
 */
export function linearFit(xs: readonly number[], ys: readonly number[]): LinearFit {
  if (xs.length !== ys.length) throw new RangeError(`linearFit: ${xs.length} x values for ${ys.length} y values`);
  if (xs.length < 2) throw new RangeError('linearFit needs at least two points');
  const mx = mean(xs);
  const my = mean(ys);
  let sxx = 0, sxy = 0, syy = 0;
  for (let i = 0; i < xs.length; i++) {
    sxx += (xs[i]! - mx) ** 2;
    sxy += (xs[i]! - mx) * (ys[i]! - my);
    syy += (ys[i]! - my) ** 2;
  }
  if (sxx === 0) throw new RangeError('linearFit: all x values are equal');
  const slope = sxy / sxx;
  const intercept = my - slope * mx;
  let sse = 0;
  for (let i = 0; i < xs.length; i++) sse += (ys[i]! - (intercept + slope * xs[i]!)) ** 2;
  return { intercept, slope, r2: syy === 0 ? (sse === 0 ? 1 : 0) : 1 - sse / syy };
}

/**
 * Growth exponent `b` of `y ≈ a * x^b`: the slope of the least-squares line through `(log x, log y)`.
 * 1 means linear growth, 2 quadratic.
 * @throws RangeError for non-positive values or fewer than two distinct x.
 */
export function growthExponent(xs: readonly number[], ys: readonly number[]): number {
  if ([...xs, ...ys].some((v) => !(v > 0))) throw new RangeError('growthExponent needs positive values');
  return linearFit(xs.map(Math.log), ys.map(Math.log)).slope;
}

/**
 * How a compression-time curve grows. `linear` is a reported judgement, not an assertion: the growth
 * exponent is at most `maxExponent` (default 1.2, allowing for fixed per-call costs at small sizes and
 * timing noise on a shared machine).
 */
export interface ScalingVerdict {
  /** Least-squares line of time (ms) against length. */
  readonly fit: LinearFit;
  /** Exponent of the log-log fit. */
  readonly exponent: number;
  /** time(longest) / time(shortest). */
  readonly timeRatio: number;
  /** longest / shortest length. */
  readonly lengthRatio: number;
  /** Exponent <= the threshold. */
  readonly linear: boolean;
}

/** Judge a time-vs-length curve (see {@link ScalingVerdict}). */
export function scalingVerdict(lengths: readonly number[], ms: readonly number[], maxExponent = 1.2): ScalingVerdict {
  const fit = linearFit(lengths, ms);
  const exponent = growthExponent(lengths, ms);
  const lo = lengths.indexOf(Math.min(...lengths));
  const hi = lengths.indexOf(Math.max(...lengths));
  return { fit, exponent, timeRatio: ms[hi]! / ms[lo]!, lengthRatio: lengths[hi]! / lengths[lo]!, linear: exponent <= maxExponent };
}

/** Inputs of {@link copyFloor}. */
export interface FloorInput {
  /** Bytes the compression must read at least (every K/V byte once). */
  readonly readBytes: number;
  /** Bytes it must write at least (every kept K/V byte once). */
  readonly writeBytes: number;
  /** Measured copy bandwidth, bytes per second, counting read plus written bytes. */
  readonly bandwidth: number;
  /** Measured compression time, ms. */
  readonly ms: number;
}

/** The memory-traffic floor of a compression and how close a measurement comes to it. */
export interface FloorResult {
  /** Time the floor traffic takes at the measured bandwidth, ms. */
  readonly floorMs: number;
  /** floorMs / ms: 1 would be as fast as copying the bytes once; small values are far from the floor. */
  readonly fraction: number;
}

/** Time of the floor traffic at the measured bandwidth, and the measurement as a fraction of it. */
export function copyFloor(input: FloorInput): FloorResult {
  const floorMs = ((input.readBytes + input.writeBytes) / input.bandwidth) * 1000;
  return { floorMs, fraction: input.ms > 0 ? floorMs / input.ms : Number.NaN };
}

/**
 * Memory-copy bandwidth of this machine now: copy `bytes` between two buffers `reps` times and return
 * read-plus-written bytes per second of the fastest copy. The fastest, not the median: the floor is a
 * lower bound on time, and on a shared machine slower copies measure the neighbours, not the memory.
 */
export function measureCopyBandwidth(bytes: number, reps = 9): number {
  const n = Math.max(1, Math.ceil(bytes / 4));
  const src = new Float32Array(n);
  for (let i = 0; i < n; i += 1024) src[i] = i;
  const dst = new Float32Array(n);
  dst.set(src); // warm-up: page both buffers in
  let best = Infinity;
  for (let r = 0; r < Math.max(1, reps); r++) {
    const t0 = performance.now();
    dst.set(src);
    best = Math.min(best, performance.now() - t0);
  }
  // Guard against a timer resolution of zero on tiny buffers.
  const ms = Math.max(best, 1e-3);
  return (2 * n * 4) / (ms / 1000);
}
