import type { Rng } from '@kvfold/core';

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
}

/**
 * CaM's merge plan (Eq. 14 of Zhang et al., ICML 2024): each evicted slot `i` targets the next `m` kept
 * slots after it (fewer when fewer exist) and merges with probability
 * `clamp(A_i / mean(A over its targets), 0, 1)`, `A` the accumulated attention (NaN counts as 0; a zero
 * mean gives 1 when `A_i > 0`, else 0). The Bernoulli draws take one `rng.next()` per source that has
 * targets, head-major then source ascending, so every backend makes the same decisions.
 *
 * @param keep kept slots per head, row-major `[heads, kept]`, ascending per head.
 * @param scores accumulated attention per head (`length` entries each).
 */
export function planNeighbourMerge(keep: Int32Array, scores: readonly (readonly number[])[], m: number, gate: GateMode, rng: Rng): HostNeighbourMergePlan {
  const heads = scores.length;
  const length = heads === 0 ? 0 : scores[0].length;
  const kept = heads === 0 ? 0 : keep.length / heads;
  const sources = length - kept;
  const source = new Int32Array(heads * sources);
  const targetStart = new Int32Array(heads * sources);
  const targetCount = new Int32Array(heads * sources);
  const weights = new Float32Array(heads * sources);
  const probability = new Float32Array(heads * sources);
  const isKept = new Uint8Array(length);
  for (let h = 0; h < heads; h++) {
    const a = scores[h];
    const score = (j: number) => (Number.isNaN(a[j]) ? 0 : a[j]);
    const ks = keep.subarray(h * kept, (h + 1) * kept);
    isKept.fill(0);
    for (const j of ks) isKept[j] = 1;
    let s = h * sources;
    let before = 0; // kept slots with a lower index than the current slot
    for (let i = 0; i < length; i++) {
      if (isKept[i]) {
        before++;
        continue;
      }
      const count = Math.min(m, kept - before);
      source[s] = i;
      if (count > 0) {
        let sum = 0;
        for (let t = before; t < before + count; t++) sum += score(ks[t]);
        const mean = sum / count;
        const ai = score(i);
        let p = mean === 0 ? (ai > 0 ? 1 : 0) : ai / mean;
        p = Number.isNaN(p) ? 0 : Math.min(1, Math.max(0, p));
        targetStart[s] = before;
        targetCount[s] = count;
        probability[s] = p;
        weights[s] = gate === 'expected' ? p : rng.next() < p ? 1 : 0;
      }
      s++;
    }
  }
  return { keep: keep.slice(), source, targetStart, targetCount, gate: weights, probability, kept, sources };
}
