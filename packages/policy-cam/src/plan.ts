import { ShapeError, type HostScratch, type Rng } from '@kvfold/core';

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
 * CaM's merge plan (Eq. 14 of Zhang et al., ICML 2024): each evicted slot `i` targets the next `m` kept
 * slots after it (fewer when fewer exist) and merges with probability
 * `clamp(A_i / mean(A over its targets), 0, 1)`, `A` the accumulated attention (NaN counts as 0; a zero
 * mean gives 1 when `A_i > 0`, else 0). The Bernoulli draws take one `rng.next()` per source that has
 * targets, head-major then source ascending, so every backend makes the same decisions.
 *
 * Written as three passes per head: the windows' means, the sources with the kept slots before each (no branch
 * per slot), then each source's probability and gate. 32 heads x 16,384 slots, half kept, m = 32: 12.4 -> 10.5
 * ms against one walk over the slots that tested every slot for being kept (`bench/cam-plan.mjs`).
 *
 * @param keep kept slots per head, row-major `[heads, kept]`, ascending per head.
 * @param scores accumulated attention, one row of `length` entries per head (arrays or typed-array views).
 * @param scratch host arrays to reuse for the plan (a plan made with them is valid until the next call with the
 *   same scratch); fresh arrays without. A policy compressing layer after layer reuses one: fresh multi-megabyte
 *   arrays cost page faults as well as the writes (CaM's host work per prefill at 32 heads x 16k slots:
 *   12.4-14.8 -> 12.1-12.4 ms; at 4k 3.8-4.3 -> 3.0-4.0 ms).
 * @throws ShapeError naming `keep` when a head's kept slots are not ascending, distinct and in range.
 */
export function planNeighbourMerge(keep: Int32Array, scores: readonly ArrayLike<number>[], m: number, gate: GateMode, rng: Rng, scratch?: HostScratch): HostNeighbourMergePlan {
  const heads = scores.length;
  const length = heads === 0 ? 0 : scores[0]!.length;
  const kept = heads === 0 ? 0 : keep.length / heads;
  const sources = length - kept;
  const out = planArrays(keep.length, heads * sources, scratch);
  const { source, targetStart, targetCount, gate: weights, probability } = out;
  const expected = gate === 'expected';
  let open = 0;
  // Per head: the kept slots' scores in kept order (NaN as 0), each window's mean, and the kept flags.
  const keptScores = new Float64Array(kept);
  const windowMean = new Float64Array(kept + 1);
  const isKept = scratch ? scratch.uint8('isKept', length) : new Uint8Array(length);
  for (let h = 0; h < heads; h++) {
    const a = scores[h]!;
    const k0 = h * kept;
    isKept.fill(0);
    for (let t = 0, last = -1; t < kept; t++) {
      const j = keep[k0 + t]!;
      if (!(j > last && j < length)) throw new ShapeError(`cam: kept slots of head ${h} must be ascending, distinct and in 0..${length - 1}`, { field: 'keep', head: h });
      last = j;
      isKept[j] = 1;
      const x = a[j]!;
      keptScores[t] = x === x ? x : 0;
    }
    windowMeans(keptScores, kept, m, windowMean);
    // The sources and the kept slots before each, without a branch on whether a slot is kept (random for a
    // score-based selection: it mispredicted about every other slot): every slot writes entry `s`, only a
    // source advances `s`, so a kept slot's entry is overwritten by the next source. The loop ends at the
    // head's last source, so no write lands past the head's entries.
    let stop = length;
    for (let t = kept - 1; t >= 0 && keep[k0 + t] === stop - 1; t--) stop--;
    const s0 = h * sources;
    for (let i = 0, s = s0, before = 0; i < stop; i++) {
      const k = isKept[i]!;
      source[s] = i;
      targetStart[s] = before;
      s += 1 - k;
      before += k;
    }
    // Each source's targets, probability and gate, in source order (one draw per source with targets).
    for (let q = s0; q < s0 + sources; q++) {
      const before = targetStart[q]!;
      const count = Math.min(m, kept - before);
      if (count > 0) {
        const x = a[source[q]!]!;
        const ai = x === x ? x : 0;
        const mean = windowMean[before]!;
        let p = mean === 0 ? (ai > 0 ? 1 : 0) : ai / mean;
        p = p === p ? Math.min(1, Math.max(0, p)) : 0;
        targetCount[q] = count;
        probability[q] = p;
        const w = expected ? p : rng.next() < p ? 1 : 0;
        weights[q] = w;
        if (w > 0) open++;
      } else {
        // No kept slot follows: what fresh arrays hold (reused arrays carry the previous call's values).
        targetStart[q] = 0;
        targetCount[q] = 0;
        probability[q] = 0;
        weights[q] = 0;
      }
    }
  }
  out.keep.set(keep);
  return { ...out, kept, sources, open };
}

/**
 * `mean[b]` = the mean of `v[b .. b + min(m, kept - b))` for every `b < kept`, each window summed from 0 in
 * ascending order (every mean is the one a window-by-window loop gives, bit for bit), eight windows at a time:
 * one window's sum is a chain of dependent additions, and eight independent chains keep the adders busy
 * (all windows this way measured faster than only those with sources one at a time, or eight at a time
 * through a list of them). `mean[kept]` = 0: the slots after the last kept one have no targets.
 */
function windowMeans(v: Float64Array, kept: number, m: number, mean: Float64Array): void {
  const full = Math.max(0, kept - m + 1); // windows b < full have all m targets
  let b = 0;
  for (; b + 8 <= full; b += 8) {
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    for (let t = b; t < b + m; t++) {
      s0 += v[t]!;
      s1 += v[t + 1]!;
      s2 += v[t + 2]!;
      s3 += v[t + 3]!;
      s4 += v[t + 4]!;
      s5 += v[t + 5]!;
      s6 += v[t + 6]!;
      s7 += v[t + 7]!;
    }
    mean[b] = s0 / m;
    mean[b + 1] = s1 / m;
    mean[b + 2] = s2 / m;
    mean[b + 3] = s3 / m;
    mean[b + 4] = s4 / m;
    mean[b + 5] = s5 / m;
    mean[b + 6] = s6 / m;
    mean[b + 7] = s7 / m;
  }
  for (; b < kept; b++) {
    const count = Math.min(m, kept - b);
    let sum = 0;
    for (let t = b; t < b + count; t++) sum += v[t]!;
    mean[b] = sum / count;
  }
  mean[kept] = 0;
}
