import type { HostScratch, Rng } from '@kvfold/core';

/** How a CaM merge gate turns the merge probability into a weight. */
export type GateMode = 'bernoulli' | 'expected';

/** A {@link planNeighbourMerge} result: the host arrays of a `NeighbourMergePlan`, row-major per head. */
export interface HostNeighbourMergePlan {
  /** Kept slots, ascending, `[heads, kept]`. */
  readonly keep: Int32Array;
  /** Evicted slots, ascending, `[heads, sources]`. */
  readonly source: Int32Array;
  /** Index into the head's kept slots of each source's first target, `[heads, sources]`. */
  readonly targetStart: Int32Array;
  /** Number of targets of each source (0 when no kept slot follows it), `[heads, sources]`. */
  readonly targetCount: Int32Array;
  /** Merge weight of each source: the Bernoulli draw, or the probability in `expected` mode, `[heads, sources]`. */
  readonly gate: Float32Array;
  /** Merge probability of each source, `clamp(A_i / mean(A over its targets), 0, 1)`, `[heads, sources]`. */
  readonly probability: Float32Array;
  /** Number of kept slots per head. */
  readonly kept: number;
  /** Number of evicted slots per head. */
  readonly sources: number;
  /** Sources whose gate is positive, over all heads (the merges that happen). */
  readonly open: number;
}

/**
 * Plan arrays for `keptSlots` kept and `sourceSlots` evicted slots over all heads: the arrays of `scratch`
 * (every entry is written by the plan), or fresh ones.
 */
function planArrays(keptSlots: number, sourceSlots: number, scratch: HostScratch | undefined): Omit<HostNeighbourMergePlan, 'kept' | 'sources' | 'open'> {
  const int32 = (name: string, n: number) => (scratch ? scratch.int32(name, n) : new Int32Array(n));
  const float32 = (name: string, n: number) => (scratch ? scratch.float32(name, n) : new Float32Array(n));
  return {
    keep: int32('keep', keptSlots),
    source: int32('source', sourceSlots),
    targetStart: int32('targetStart', sourceSlots),
    targetCount: int32('targetCount', sourceSlots),
    gate: float32('gate', sourceSlots),
    probability: float32('probability', sourceSlots),
  };
}

/**
 * `out[g]` = the mean of the `min(m, kept - before)` kept scores from `before = gapAt[g]` on, each window summed
 * in slot order (0 for an empty window). Eight windows at a time: each sum is one chain of dependent float64
 * adds, and eight independent chains keep the adder busy where one waits on each add's latency (32 x 16k slots:
 * the window sums took about 5 of CaM's 9 ms of planning one at a time).
 */
function windowMeans(keptScores: Float64Array, gapAt: Int32Array, gaps: number, kept: number, m: number, out: Float64Array): void {
  let g = 0;
  for (; g + 7 < gaps; g += 8) {
    const b0 = gapAt[g]!, b1 = gapAt[g + 1]!, b2 = gapAt[g + 2]!, b3 = gapAt[g + 3]!;
    const b4 = gapAt[g + 4]!, b5 = gapAt[g + 5]!, b6 = gapAt[g + 6]!, b7 = gapAt[g + 7]!;
    // `before` ascends, so windows only shrink: all eight add while the last has slots, then each finishes alone.
    const common = Math.max(0, Math.min(m, kept - b7));
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    for (let t = 0; t < common; t++) {
      s0 += keptScores[b0 + t]!;
      s1 += keptScores[b1 + t]!;
      s2 += keptScores[b2 + t]!;
      s3 += keptScores[b3 + t]!;
      s4 += keptScores[b4 + t]!;
      s5 += keptScores[b5 + t]!;
      s6 += keptScores[b6 + t]!;
      s7 += keptScores[b7 + t]!;
    }
    out[g] = finishMean(keptScores, b0, common, Math.min(m, kept - b0), s0);
    out[g + 1] = finishMean(keptScores, b1, common, Math.min(m, kept - b1), s1);
    out[g + 2] = finishMean(keptScores, b2, common, Math.min(m, kept - b2), s2);
    out[g + 3] = finishMean(keptScores, b3, common, Math.min(m, kept - b3), s3);
    out[g + 4] = finishMean(keptScores, b4, common, Math.min(m, kept - b4), s4);
    out[g + 5] = finishMean(keptScores, b5, common, Math.min(m, kept - b5), s5);
    out[g + 6] = finishMean(keptScores, b6, common, Math.min(m, kept - b6), s6);
    out[g + 7] = finishMean(keptScores, b7, common, Math.min(m, kept - b7), s7);
  }
  for (; g < gaps; g++) out[g] = finishMean(keptScores, gapAt[g]!, 0, Math.min(m, kept - gapAt[g]!), 0);
}

/** The next `out.length` values of `rng` into `out` (in one call where the generator offers one). */
function takeDraws(rng: Rng, out: Float64Array): void {
  if (rng.fill) rng.fill(out);
  else for (let i = 0; i < out.length; i++) out[i] = rng.next();
}

/** Adds the window's entries `[done, count)` from `b` to `sum`, in order, and returns the mean (0 for no entries). */
function finishMean(keptScores: Float64Array, b: number, done: number, count: number, sum: number): number {
  for (let t = done; t < count; t++) sum += keptScores[b + t]!;
  return count > 0 ? sum / count : 0;
}

/**
 * CaM's merge plan (Eq. 14 of Zhang et al., ICML 2024): each evicted slot `i` targets the next `m` kept
 * slots after it (fewer when fewer exist) and merges with probability
 * `clamp(A_i / mean(A over its targets), 0, 1)`, `A` the accumulated attention (NaN counts as 0; a zero
 * mean gives 1 when `A_i > 0`, else 0). The Bernoulli draws take one `rng.next()` per source that has
 * targets, head-major then source ascending, so every backend makes the same decisions.
 *
 * @param keep kept slots per head, row-major `[heads, kept]`, ascending per head.
 * @param scores accumulated attention, one row of `length` entries per head (arrays or typed-array views).
 * @param scratch host arrays to reuse for the plan (a plan made with them is valid until the next call with the
 *   same scratch); fresh arrays without. A policy compressing layer after layer reuses one: fresh multi-megabyte
 *   arrays cost page faults as well as the writes (CaM's host work per prefill at 32 heads x 16k slots:
 *   12.4-14.8 -> 12.1-12.4 ms; at 4k 3.8-4.3 -> 3.0-4.0 ms).
 */
export function planNeighbourMerge(keep: Int32Array, scores: readonly ArrayLike<number>[], m: number, gate: GateMode, rng: Rng, scratch?: HostScratch): HostNeighbourMergePlan {
  const heads = scores.length;
  const length = heads === 0 ? 0 : scores[0]!.length;
  const kept = heads === 0 ? 0 : keep.length / heads;
  const sources = length - kept;
  const out = planArrays(keep.length, heads * sources, scratch);
  const { source, targetStart, targetCount, gate: weights, probability } = out;
  // Gates that fire, for the policy's debug line: counted here rather than in a second pass over every gate.
  let open = 0;
  // Per head: the kept slots' scores in kept order (NaN as 0), so window sums read them contiguously (the same
  // values added in the same order as through `keep`); then the gaps between kept slots, since every source in
  // one gap has the same targets and so the same mean.
  const keptScores = new Float64Array(kept);
  const gapAt = new Int32Array(kept + 1);
  const gapMean = new Float64Array(kept + 1);
  const expected = gate === 'expected';
  // The head's Bernoulli draws, made in one call before its sources are walked (the same values in the same
  // order as one `next()` per source).
  const draws = new Float64Array(expected ? 0 : sources);
  for (let h = 0; h < heads; h++) {
    const a = scores[h]!;
    const k0 = h * kept;
    for (let t = 0; t < kept; t++) {
      const x = a[keep[k0 + t]!]!;
      keptScores[t] = x === x ? x : 0;
    }
    // The gaps that hold a source, by the number of kept slots before them (`before`).
    let gaps = 0;
    let from = 0;
    let drawn = 0; // sources with a kept slot after them: each takes one draw
    for (let b = 0; b <= kept; b++) {
      const to = b < kept ? keep[k0 + b]! : length;
      if (to > from) {
        gapAt[gaps++] = b;
        if (b < kept) drawn += to - from;
      }
      from = to + 1;
    }
    if (!expected) takeDraws(rng, draws.subarray(0, drawn));
    let d = 0;
    windowMeans(keptScores, gapAt, gaps, kept, m, gapMean);
    let s = h * sources;
    for (let g = 0; g < gaps; g++) {
      const before = gapAt[g]!;
      const first = before === 0 ? 0 : keep[k0 + before - 1]! + 1;
      const last = before < kept ? keep[k0 + before]! : length;
      const count = Math.min(m, kept - before);
      if (count === 0) {
        // Sources after the last kept slot: what fresh arrays hold (reused arrays carry the previous call's values).
        for (let i = first; i < last; i++, s++) {
          source[s] = i;
          targetStart[s] = 0;
          targetCount[s] = 0;
          probability[s] = 0;
          weights[s] = 0;
        }
        continue;
      }
      const mean = gapMean[g]!;
      for (let i = first; i < last; i++, s++) {
        const ai = a[i]!;
        // A NaN score fails both compares, so it counts as 0 without a test of its own, as does a NaN ratio.
        const r = mean === 0 ? (ai > 0 ? 1 : 0) : ai / mean;
        const p = r > 1 ? 1 : r > 0 ? r : 0;
        source[s] = i;
        targetStart[s] = before;
        targetCount[s] = count;
        probability[s] = p;
        if (expected) {
          weights[s] = p;
          open += +(p > 0);
        } else {
          // The gate fires when draw < p, i.e. p - draw > 0 (a difference of doubles is 0 only between equal
          // values): kept for the loop below, which turns them into gates without a branch per source.
          draws[d] = p - draws[d]!;
          d++;
        }
      }
    }
    const s0 = h * sources;
    for (let j = 0; j < d; j++) {
      const w = +(draws[j]! > 0);
      weights[s0 + j] = w;
      open += w;
    }
  }
  out.keep.set(keep);
  return { ...out, kept, sources, open };
}
