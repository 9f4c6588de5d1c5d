// CaM's in-place merge of one evicted slot per head (the decode step's fast path) against the rule written
// the slow way: every successor sorted by key, the first m taken. Exact equality: the fast path's prefilter
// and unrolled sums must not change a single bit.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ROW_SPAN, createRng, type LayerViews } from '@kvfold/core';
import { mulberry32 } from '@kvfold/testkit';
import { mergeEvictedInPlace } from '../src/in-place.js';

function mergeByOracle(positions: Int32Array, scores: Float32Array, values: Float32Array, H: number, L: number, D: number, evict: Int32Array, m: number, gate: 'expected' | 'bernoulli', seed: number): Float32Array {
  const out = values.slice();
  const rng = createRng(seed);
  const key = (h: number, j: number) => positions[h * L + j]! * ROW_SPAN + j;
  for (let h = 0; h < H; h++) {
    const e = evict[h]!;
    const targets = Array.from({ length: L }, (_, j) => j)
      .filter((j) => key(h, j) > key(h, e))
      .sort((a, b) => key(h, a) - key(h, b))
      .slice(0, m);
    if (targets.length === 0) continue;
    const a = (j: number) => (Number.isNaN(scores[h * L + j]!) ? 0 : scores[h * L + j]!);
    const mean = targets.reduce((s, j) => s + a(j), 0) / targets.length;
    let p = mean === 0 ? (a(e) > 0 ? 1 : 0) : a(e) / mean;
    p = Number.isNaN(p) ? 0 : Math.min(1, Math.max(0, p));
    const g = Math.fround(gate === 'expected' ? p : rng.next() < p ? 1 : 0);
    if (g === 0) continue;
    for (const j of targets) for (let d = 0; d < D; d++) out[(h * L + j) * D + d] = out[(h * L + j) * D + d]! + (g / targets.length) * out[(h * L + e) * D + d]!;
  }
  return out;
}

describe('mergeEvictedInPlace', () => {
  it('equals the sorted-successor rule bit for bit (shuffled and repeated positions, D not a multiple of 4)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 24 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 30 }),
        fc.constantFrom('expected' as const, 'bernoulli' as const),
        fc.constantFrom('ordered' as const, 'shuffled' as const, 'repeats' as const, 'extreme' as const),
        fc.integer({ min: 0, max: 1_000_000 }),
        (H, L, D, m, gate, layout, seed) => {
          const r = mulberry32(seed);
          const positions = new Int32Array(H * L);
          for (let h = 0; h < H; h++) {
            // extreme: any int32, the ends included (the unsigned range test's edge).
            const ends = [-2_147_483_648, -2_147_483_647, 2_147_483_646, 2_147_483_647];
            const int32 = () => (r() < 0.5 ? ends[Math.floor(r() * 4)]! : Math.floor(r() * 2 ** 32) - 2 ** 31);
            const row = Array.from({ length: L }, (_, j) => (layout === 'extreme' ? int32() : layout === 'repeats' ? Math.floor(r() * (L / 2 + 1)) : j * 2));
            if (layout !== 'ordered')
              for (let j = L - 1; j > 0; j--) {
                const i = Math.floor(r() * (j + 1));
                [row[i], row[j]] = [row[j]!, row[i]!];
              }
            positions.set(row, h * L);
          }
          const scores = Float32Array.from({ length: H * L }, () => (r() < 0.1 ? Number.NaN : r() < 0.2 ? 0 : r()));
          const values = Float32Array.from({ length: H * L * D }, () => r() * 4 - 2);
          const evict = Int32Array.from({ length: H }, () => Math.floor(r() * L));
          const want = mergeByOracle(positions, scores, values, H, L, D, evict, m, gate, seed);
          const views = { keys: new Float32Array(H * L * D), values, positions, counts: new Int32Array(H * L).fill(1), scores, heads: H, length: L, headDim: D } as LayerViews;
          mergeEvictedInPlace(views, evict, m, gate, createRng(seed));
          expect(Array.from(values)).toEqual(Array.from(want));
        },
      ),
      { numRuns: 1000, seed: 3 },
    );
  });
});
