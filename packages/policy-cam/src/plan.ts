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
  // The kept slots' scores of one head in kept order (NaN as 0): window sums then read them contiguously,
  // the same values added in the same order as through `keep`.
  const keptScores = new Float64Array(kept);
  for (let h = 0; h < heads; h++) {
    const a = scores[h]!;
    const k0 = h * kept;
    for (let t = 0; t < kept; t++) {
      const x = a[keep[k0 + t]!]!;
      keptScores[t] = x === x ? x : 0;
    }
    let s = h * sources;
    let before = 0; // kept slots with a lower index than the current slot
    let windowOf = -1; // `before` value whose target mean is in `mean`
    let mean = 0;
    for (let i = 0; i < length; i++) {
      if (before < kept && keep[k0 + before] === i) {
        before++;
        continue;
      }
      const count = Math.min(m, kept - before);
      source[s] = i;
      if (count > 0) {
        // Every source between the same two kept slots has the same targets: their mean is summed once.
        if (windowOf !== before) {
          let sum = 0;
          for (let t = before; t < before + count; t++) sum += keptScores[t]!;
          mean = sum / count;
          windowOf = before;
        }
        const ai = a[i]! === a[i]! ? a[i]! : 0;
        let p = mean === 0 ? (ai > 0 ? 1 : 0) : ai / mean;
        p = Number.isNaN(p) ? 0 : Math.min(1, Math.max(0, p));
        targetStart[s] = before;
        targetCount[s] = count;
        probability[s] = p;
        const w = gate === 'expected' ? p : rng.next() < p ? 1 : 0;
        weights[s] = w;
        open += +(w > 0);
      } else {
        // What fresh arrays hold: reused arrays carry the previous call's values.
        targetStart[s] = 0;
        targetCount[s] = 0;
        probability[s] = 0;
        weights[s] = 0;
      }
      s++;
    }
  }
  out.keep.set(keep);
  return { ...out, kept, sources, open };
}
