import type { HostScratch } from '@kvfold/core';
import type { LayerPlan } from './plan.js';
import type { ResolvedSigma } from './options.js';

/** Keys in host memory, row-major `[heads, length, headDim]`. */
export interface HostKeys {
  /** Key elements. */
  readonly data: ArrayLike<number>;
  /** Dimension of each key. */
  readonly headDim: number;
}

/**
 * Smallest bandwidth handed to the kernel: below it `sigma^2` underflows float32 and a zero distance
 * would give 0/0 in the Gaussian. Weights at this bandwidth already single out the pivot's equals.
 */
export const MIN_SIGMA = 1e-6;

/** Positive finite bandwidths pass (floored at {@link MIN_SIGMA}); anything else becomes `fallback`. */
function guard(s: number, fallback: number): number {
  return Number.isFinite(s) && s > 0 ? Math.max(s, MIN_SIGMA) : fallback;
}

/** Squared Euclidean distance between slots `a` and `b` of head `h`. */
function dist2(keys: HostKeys, length: number, h: number, a: number, b: number): number {
  const d = keys.headDim;
  const oa = (h * length + a) * d;
  const ob = (h * length + b) * d;
  let s = 0;
  for (let j = 0; j < d; j++) {
    const x = keys.data[oa + j]! - keys.data[ob + j]!;
    s += x * x;
  }
  return s;
}

/**
 * `sigma^2` = mean squared distance of the non-pivot members to the pivot (the third-party port's
 * "RMS distance"; the pivot's own zero distance is left out so it does not shrink the bandwidth).
 * Returns `fallback` when that is not a positive finite number (all members equal to the pivot).
 * Floored at {@link MIN_SIGMA}.
 */
export function rmsSigma(d2: readonly number[], fallback: number): number {
  if (d2.length === 0) return fallback;
  return guard(Math.sqrt(d2.reduce((a, b) => a + b, 0) / d2.length), fallback);
}

/**
 * Fixed-point iteration of the paper's Eq. 4, `sigma = sum_{i in S} g_pi / (sqrt(2) |S|)` with
 * `g_pi = exp(-d_i^2 / (2 sigma^2))` and `g_pp = 1`, started at `start`. `d2` holds the squared
 * distances of the non-pivot members. Because every `g <= 1`, the result lies in
 * `(1 / (sqrt(2) |S|), 1 / sqrt(2)]` whatever the start: the formula as reported cannot produce the
 * "around 5" the paper says it observes. Returns `start` when the iteration degenerates.
 */
export function eq4Sigma(d2: readonly number[], start: number, iterations: number): number {
  if (d2.length === 0) return start;
  const size = d2.length + 1;
  let s = start;
  for (let t = 0; t < iterations; t++) {
    let g = 1;
    for (const d of d2) g += Math.exp(-d / (2 * s * s));
    const next = g / (Math.SQRT2 * size);
    if (!(Number.isFinite(next) && next > 0)) return start;
    s = next;
  }
  return guard(s, start);
}

/**
 * `value` for each of `heads x outLength` output slots: the `fixed` mode's bandwidths, which need no plan.
 * With `scratch` the result is its `sigma` array (valid until it hands it out again).
 */
export function fixedSigmas(heads: number, outLength: number, value: number, scratch?: HostScratch): Float32Array {
  return (scratch ? scratch.float32('sigma', heads * outLength) : new Float32Array(heads * outLength)).fill(value);
}

/**
 * Bandwidth of every output slot of a plan, `[heads, outLength]`. `fixed` needs no keys; `rms` and
 * `eq4` need the keys on the host (the policy downloads them, one extra transfer per compression).
 * With `scratch` the result is its `sigma` array (valid until it hands it out again).
 */
export function planSigmas(plan: LayerPlan, spec: ResolvedSigma, keys?: HostKeys, scratch?: HostScratch): Float32Array {
  const { heads, length, outLength } = plan;
  const out = fixedSigmas(heads, outLength, spec.value, scratch);
  if (spec.mode === 'fixed') return out;
  if (!keys) throw new Error(`kvmerger: sigma mode "${spec.mode}" needs the keys on the host`);
  for (let h = 0; h < heads; h++) {
    const base = h * length;
    for (let s = 0; s < length; ) {
      const id = plan.segment[base + s]!;
      let e = s;
      while (e + 1 < length && plan.segment[base + e + 1] === id) e++;
      if (id >= 0 && e > s) {
        const p = plan.pivot[h * outLength + id]!;
        const d2: number[] = [];
        for (let i = s; i <= e; i++) if (i !== p) d2.push(dist2(keys, length, h, p, i));
        out[h * outLength + id] = spec.mode === 'rms' ? rmsSigma(d2, spec.value) : eq4Sigma(d2, spec.value, spec.iterations);
      }
      s = e + 1;
    }
  }
  return out;
}
