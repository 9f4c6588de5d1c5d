import { ROW_SPAN, type LayerViews, type Rng } from '@kvfold/core';
import type { GateMode } from './plan.js';

/**
 * CaM's merge of one evicted slot per head, in place (the decode step of `ScorerPolicy`'s in-place path):
 * the same targets, gate and values as {@link planNeighbourMerge} and `mergeIntoNeighbours` give for that
 * slot, on a cache that need not be in position order. The targets of head `h`'s evicted row are the `m`
 * other rows that follow it by position (fewer when fewer exist); its merge probability is
 * `clamp(A_e / mean(A over the targets), 0, 1)` with `A` the scores (NaN as 0), one `rng.next()` per head
 * that has targets (Bernoulli gate), and each target's value gains `gate * v_e / targets` (float64, then
 * float32, like the kernel). Touches O(heads x (length + m x headDim)).
 */
export function mergeEvictedInPlace(v: LayerViews, evict: Int32Array, m: number, gate: GateMode, rng: Rng): void {
  const { heads, length: L, headDim: D, positions, scores, values } = v;
  // The `m` smallest successor keys so far, ascending, and their rows.
  const best = new Float64Array(Math.min(m, L));
  const rows = new Int32Array(best.length);
  // The evicted value times the gate's share, once per head (the same float64 products the sum would form).
  const share = new Float64Array(D);
  for (let h = 0; h < heads; h++) {
    const base = h * L;
    const e = evict[h]!;
    const pe = positions[base + e]!;
    const ke = pe * ROW_SPAN + e;
    let n = 0;
    // Rows outside [pe, limit] cannot enter: before the evicted one, or past the m-th smallest successor
    // once m are held (limit starts at the largest int32). Tested as one unsigned compare,
    // (p - pe) >>> 0 > limit - pe, exact for int32 positions and limit >= pe: a p below pe maps to
    // 2^32 + p - pe, above the span since p > limit - 2^32. One branch instead of two matters once in-place
    // steps have put the rows out of position order (a random p < pe mispredicts half the time).
    let span = 2_147_483_647 - pe;
    for (let j = 0; j < L; j++) {
      const p = positions[base + j]!;
      if ((p - pe) >>> 0 > span) continue;
      const key = p * ROW_SPAN + j;
      if (key <= ke) continue;
      if (n === best.length && key >= best[n - 1]!) continue;
      // Insertion into the sorted buffer (it holds at most m keys).
      let at = n < best.length ? n++ : n - 1;
      while (at > 0 && best[at - 1]! > key) {
        best[at] = best[at - 1]!;
        rows[at] = rows[at - 1]!;
        at--;
      }
      best[at] = key;
      rows[at] = j;
      if (n === best.length) span = positions[base + rows[n - 1]!]! - pe;
    }
    if (n === 0) continue;
    let sum = 0;
    for (let t = 0; t < n; t++) {
      const x = scores[base + rows[t]!]!;
      sum += x === x ? x : 0;
    }
    const mean = sum / n;
    const ae = scores[base + e]!;
    const ai = ae === ae ? ae : 0;
    let p = mean === 0 ? (ai > 0 ? 1 : 0) : ai / mean;
    p = Number.isNaN(p) ? 0 : Math.min(1, Math.max(0, p));
    const g = Math.fround(gate === 'expected' ? p : rng.next() < p ? 1 : 0);
    if (g === 0) continue;
    const f = g / n;
    const src = (base + e) * D;
    for (let d = 0; d < D; d++) share[d] = f * values[src + d]!;
    // Unrolled by four (about 1.7x faster in V8); each element is the same float64 sum rounded to float32.
    const D4 = D - (D & 3);
    for (let t = 0; t < n; t++) {
      const dst = (base + rows[t]!) * D;
      let d = 0;
      for (; d < D4; d += 4) {
        values[dst + d] = values[dst + d]! + share[d]!;
        values[dst + d + 1] = values[dst + d + 1]! + share[d + 1]!;
        values[dst + d + 2] = values[dst + d + 2]! + share[d + 2]!;
        values[dst + d + 3] = values[dst + d + 3]! + share[d + 3]!;
      }
      for (; d < D; d++) values[dst + d] = values[dst + d]! + share[d]!;
    }
  }
}
