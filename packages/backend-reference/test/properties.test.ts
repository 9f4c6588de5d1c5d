import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { layerFromHost, type HostTensor, type LayerCache, type SegmentPlan } from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { bruteObserve, close, f32, i32, plain, randomLayer, rng, snapshot } from './util.js';

const k = createReferenceKernels();
const shape = fc.record({
  heads: fc.integer({ min: 1, max: 4 }),
  length: fc.integer({ min: 1, max: 40 }),
  headDim: fc.integer({ min: 1, max: 16 }),
  seed: fc.integer({ min: 0, max: 0x7fffffff }),
});
const runs = { numRuns: 40 };

function makeLayer(s: { heads: number; length: number; headDim: number; seed: number }): LayerCache<HostTensor> {
  return layerFromHost(k, randomLayer(s.heads, s.length, s.headDim, s.seed));
}

/** Random segment plan: runs of 1-4 consecutive slots, each run dropped with probability 0.2; same run count on every head. */
function randomPlan(heads: number, length: number, seed: number, valueScale: 'count' | 'none'): SegmentPlan<HostTensor> & { outLength: number } {
  const r = rng(seed);
  // Choose the output length first so every head can produce exactly that many runs.
  const outLength = Math.max(1, Math.floor(length * (0.3 + 0.5 * r())));
  const segment: number[] = [];
  const pivot: number[] = [];
  const sigma: number[] = [];
  for (let h = 0; h < heads; h++) {
    // Split `length` slots into runs: `outLength` kept runs plus dropped slots scattered in between.
    const kept = new Array(length).fill(-2) as number[];
    const dropped = length - outLength;
    const dropAt = new Set<number>();
    while (dropAt.size < Math.floor(dropped * r())) dropAt.add(Math.floor(r() * length));
    const slots = [...Array(length).keys()].filter((i) => !dropAt.has(i));
    // assign kept slots to outLength non-empty consecutive runs
    const cuts = new Set<number>();
    while (cuts.size < outLength - 1) cuts.add(1 + Math.floor(r() * (slots.length - 1)));
    let id = 0;
    const members: number[][] = [[]];
    slots.forEach((s, j) => {
      if (cuts.has(j)) {
        id++;
        members.push([]);
      }
      kept[s] = id;
      members[id]!.push(s);
    });
    for (const i of dropAt) kept[i] = -1;
    // A dropped slot before the first run or between runs keeps ids non-decreasing either way.
    segment.push(...kept);
    for (const m of members) {
      pivot.push(m[Math.floor(r() * m.length)]!);
      sigma.push(0.05 + 10 * r());
    }
  }
  return { segment: i32([heads, length], segment), pivot: i32([heads, outLength], pivot), sigma: f32([heads, outLength], sigma), valueScale, outLength };
}

/** Brute-force topK: full sort by (score desc, NaN lowest, index asc), take k, sort by index. */
function bruteTopK(s: ArrayLike<number>, L: number, H: number, kk: number, from: number, to: number): number[] {
  const out: number[] = [];
  for (let h = 0; h < H; h++) {
    const idx = Array.from({ length: to - from }, (_, i) => from + i);
    const v = (i: number) => {
      const x = s[h * L + i]!;
      return Number.isNaN(x) ? Number.NEGATIVE_INFINITY : x;
    };
    idx.sort((a, b) => (v(a) === v(b) ? a - b : v(b) > v(a) ? 1 : -1));
    out.push(...idx.slice(0, kk).sort((a, b) => a - b));
  }
  return out;
}

describe('properties over random shapes', () => {
  it('gather with the identity index returns the layer', () => {
    fc.assert(
      fc.property(shape, (s) => {
        const l = makeLayer(s);
        const idx = i32([s.heads, s.length], Array.from({ length: s.heads * s.length }, (_, i) => i % s.length));
        expect(plain(k.gather(l, idx))).toEqual(plain(l));
      }),
      runs,
    );
  });

  it('topK matches a brute-force sort (with ties and NaN)', () => {
    fc.assert(
      fc.property(shape, fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: 2 }), (s, pick, mode) => {
        const r = rng(s.seed);
        const n = s.heads * s.length;
        // mode 0: continuous; 1: few levels (many ties); 2: few levels plus NaN and infinities
        const data = Float32Array.from({ length: n }, () => {
          if (mode === 0) return r() * 2 - 1;
          const u = r();
          if (mode === 2 && u < 0.1) return Number.NaN;
          if (mode === 2 && u < 0.15) return u < 0.125 ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
          return Math.floor(r() * 4);
        });
        const from = pick % (s.length + 1);
        const to = from + ((pick >> 3) % (s.length - from + 1));
        const kk = (pick >> 6) % (to - from + 1);
        const out = k.topK(f32([s.heads, s.length], data), kk, from, to);
        expect(out.shape).toEqual([s.heads, kk]);
        expect(Array.from(out.data)).toEqual(bruteTopK(data, s.length, s.heads, kk, from, to));
      }),
      { numRuns: 60 },
    );
  });

  it('merge weights sum to 1: constant values merge to the same constant', () => {
    fc.assert(
      fc.property(shape, (s) => {
        const base = makeLayer(s);
        const r = rng(s.seed ^ 0x5bd1e995);
        const v = Array.from({ length: s.headDim }, () => r() * 4 - 2);
        const values = f32([s.heads, s.length, s.headDim], Array.from({ length: s.heads * s.length * s.headDim }, (_, i) => v[i % s.headDim]!));
        const plan = randomPlan(s.heads, s.length, s.seed, 'none');
        const out = k.mergeSegments({ ...base, values }, plan);
        const expected = Array.from({ length: s.heads * plan.outLength * s.headDim }, (_, i) => v[i % s.headDim]!);
        close(out.values.data, expected, 1e-5);
      }),
      runs,
    );
  });

  it('mergeSegments preserves count and score totals, keeps pivot positions, and merged keys stay in the members\' hull', () => {
    fc.assert(
      fc.property(shape, fc.boolean(), (s, byCount) => {
        const l = makeLayer(s);
        const plan = randomPlan(s.heads, s.length, s.seed, byCount ? 'count' : 'none');
        const out = k.mergeSegments(l, plan);
        const M = plan.outLength;
        const D = s.headDim;
        for (let h = 0; h < s.heads; h++) {
          let inCount = 0;
          let inScore = 0;
          let outCount = 0;
          let outScore = 0;
          for (let i = 0; i < s.length; i++) {
            if (plan.segment.data[h * s.length + i] === -1) continue;
            inCount += l.counts.data[h * s.length + i]!;
            inScore += l.scores.data[h * s.length + i]!;
          }
          for (let o = 0; o < M; o++) {
            outCount += out.counts.data[h * M + o]!;
            outScore += out.scores.data[h * M + o]!;
            const p = plan.pivot.data[h * M + o]!;
            expect(out.positions.data[h * M + o]).toBe(l.positions.data[h * s.length + p]);
            for (let d = 0; d < D; d++) {
              let lo = Infinity;
              let hi = -Infinity;
              for (let i = 0; i < s.length; i++) {
                if (plan.segment.data[h * s.length + i] !== o) continue;
                const x = l.keys.data[(h * s.length + i) * D + d]!;
                lo = Math.min(lo, x);
                hi = Math.max(hi, x);
              }
              const y = out.keys.data[(h * M + o) * D + d]!;
              expect(y).toBeGreaterThanOrEqual(lo - 1e-5);
              expect(y).toBeLessThanOrEqual(hi + 1e-5);
            }
          }
          expect(outCount).toBe(inCount);
          expect(Math.abs(outScore - inScore)).toBeLessThan(1e-4);
        }
      }),
      runs,
    );
  });

  it('gather of a sorted index keeps positions sorted', () => {
    fc.assert(
      fc.property(shape, (s) => {
        const l = makeLayer(s);
        const r = rng(s.seed + 1);
        const kk = 1 + Math.floor(r() * s.length);
        const idx: number[] = [];
        for (let h = 0; h < s.heads; h++) {
          const all = [...Array(s.length).keys()].sort(() => r() - 0.5).slice(0, kk).sort((a, b) => a - b);
          idx.push(...all);
        }
        const out = k.gather(l, i32([s.heads, kk], idx));
        for (let h = 0; h < s.heads; h++) {
          for (let j = 1; j < kk; j++) expect(out.positions.data[h * kk + j]!).toBeGreaterThan(out.positions.data[h * kk + j - 1]!);
        }
      }),
      runs,
    );
  });

  it('no kernel mutates its inputs, and every output is finite', async () => {
    await fc.assert(
      fc.asyncProperty(shape, fc.constantFrom<'mean' | 'max' | 'sum'>('mean', 'max', 'sum'), async (s, reduction) => {
        const l = makeLayer(s);
        const r = rng(s.seed + 7);
        const before = snapshot(l);
        const attention = f32([s.heads, s.length], Array.from({ length: s.heads * s.length }, () => r()));
        const attBefore = Array.from(attention.data);
        const plan = randomPlan(s.heads, s.length, s.seed, 'count');
        const planBefore = [plan.segment, plan.pivot, plan.sigma].map((t) => Array.from(t.data));
        const newK = f32([s.heads, 2, s.headDim], Array.from({ length: s.heads * 2 * s.headDim }, () => r()));
        const newP = i32([s.heads, 2], Array.from({ length: s.heads * 2 }, (_, i) => 1000 + (i % 2)));
        const qHeads = s.heads * (1 + Math.floor(r() * 3));
        const n = 1 + Math.floor(r() * 4);
        const queries = f32([qHeads, n, s.headDim], Array.from({ length: qHeads * n * s.headDim }, () => r() * 4 - 2));
        const qPos = i32([n], Array.from({ length: n }, () => Math.floor(r() * 3 * s.length) - 2));
        const keep = Array.from({ length: s.heads }, () => [...Array(s.length).keys()].filter((i) => i === 0 || r() < 0.5));
        const K = Math.min(...keep.map((x) => x.length));
        const keepIdx = i32([s.heads, K], keep.flatMap((x) => x.slice(0, K)));
        const cam = {
          keep: keepIdx,
          source: i32([s.heads, 2], Array.from({ length: s.heads * 2 }, () => Math.floor(r() * s.length))),
          targetStart: i32([s.heads, 2], [...Array(s.heads * 2)].fill(0)),
          targetCount: i32([s.heads, 2], Array.from({ length: s.heads * 2 }, () => Math.floor(r() * (K + 1)))),
          gate: f32([s.heads, 2], Array.from({ length: s.heads * 2 }, () => (r() < 0.5 ? 0 : 1))),
        };

        const outputs: HostTensor[] = [];
        const push = (x: LayerCache<HostTensor>) => outputs.push(x.keys, x.values, x.scores);
        push(k.append(l, newK, newK, newP));
        outputs.push(k.accumulate(l.scores, attention));
        outputs.push(k.adjacentCosine(l.keys));
        const top = k.topK(l.scores, Math.ceil(s.length / 2), 0, s.length);
        push(k.gather(l, top));
        push(k.mergeSegments(l, plan));
        push(k.mergeSegments(l, { ...plan, valueScale: 'none' }));
        push(k.mergeIntoNeighbours(l, cam));
        const o = k.observe(l, queries, qPos, { groupReduction: reduction, proportional: r() < 0.5 });
        outputs.push(o.attention, o.lastAttention);

        expect(snapshot(l)).toEqual(before);
        expect(Array.from(attention.data)).toEqual(attBefore);
        expect([plan.segment, plan.pivot, plan.sigma].map((t) => Array.from(t.data))).toEqual(planBefore);
        for (const t of outputs) expect(await k.allFinite(t)).toBe(true);
      }),
      runs,
    );
  });

  it('observe with mean reduction: last sums to 1 when the last query sees a slot, 0 otherwise', () => {
    fc.assert(
      fc.property(shape, (s) => {
        const l = makeLayer(s);
        const r = rng(s.seed + 3);
        const qHeads = s.heads * (1 + Math.floor(r() * 3));
        const n = 1 + Math.floor(r() * 3);
        const queries = f32([qHeads, n, s.headDim], Array.from({ length: qHeads * n * s.headDim }, () => r() * 4 - 2));
        const qPos = Array.from({ length: n }, () => Math.floor(r() * 3 * s.length));
        const o = k.observe(l, queries, i32([n], qPos));
        for (let h = 0; h < s.heads; h++) {
          const visible = (p: number) => Array.from(l.positions.data.subarray(h * s.length, (h + 1) * s.length)).some((x) => x <= p);
          let last = 0;
          let total = 0;
          for (let j = 0; j < s.length; j++) {
            last += o.lastAttention.data[h * s.length + j]!;
            total += o.attention.data[h * s.length + j]!;
            // a slot after every query position receives nothing
            if (l.positions.data[h * s.length + j]! > Math.max(...qPos)) expect(o.attention.data[h * s.length + j]).toBe(0);
          }
          expect(Math.abs(last - (visible(qPos[n - 1]!) ? 1 : 0))).toBeLessThan(1e-5);
          expect(Math.abs(total - qPos.filter(visible).length)).toBeLessThan(1e-5);
        }
      }),
      runs,
    );
  });

  it('mergeIntoNeighbours with every gate 0 equals gather(keep); append then gather of the old slots is identity', () => {
    fc.assert(
      fc.property(shape, (s) => {
        const l = makeLayer(s);
        const keep = i32([s.heads, s.length], Array.from({ length: s.heads * s.length }, (_, i) => i % s.length));
        const plan = {
          keep,
          source: i32([s.heads, 1], new Array(s.heads).fill(0)),
          targetStart: i32([s.heads, 1], new Array(s.heads).fill(0)),
          targetCount: i32([s.heads, 1], new Array(s.heads).fill(s.length)),
          gate: f32([s.heads, 1], new Array(s.heads).fill(0)),
        };
        expect(plain(k.mergeIntoNeighbours(l, plan))).toEqual(plain(k.gather(l, keep)));
        const ext = k.append(l, f32([s.heads, 1, s.headDim], new Array(s.heads * s.headDim).fill(1)), f32([s.heads, 1, s.headDim], new Array(s.heads * s.headDim).fill(2)), i32([s.heads, 1], new Array(s.heads).fill(10_000)));
        expect(plain(k.gather(ext, keep))).toEqual(plain(l));
      }),
      runs,
    );
  });

  it('observe matches a direct per-query computation (GQA groups, every reduction, proportional)', () => {
    fc.assert(
      fc.property(shape, fc.constantFrom<'mean' | 'max' | 'sum'>('mean', 'max', 'sum'), fc.boolean(), (s, reduction, proportional) => {
        const l = makeLayer(s);
        const r = rng(s.seed + 11);
        const qHeads = s.heads * (1 + Math.floor(r() * 3));
        const n = Math.floor(r() * 4);
        const queries = f32([qHeads, n, s.headDim], Array.from({ length: qHeads * n * s.headDim }, () => r() * 4 - 2));
        const qPos = i32([n], Array.from({ length: n }, () => Math.floor(r() * 3 * s.length) - 2));
        const scale = r() < 0.5 ? 1 / Math.sqrt(s.headDim) : 0.1 + 2 * r();
        const o = k.observe(l, queries, qPos, { groupReduction: reduction, proportional, scale });
        const want = bruteObserve(l, queries, qPos, reduction, scale, proportional);
        close(o.attention.data, want.attention, 1e-5);
        close(o.lastAttention.data, want.lastAttention, 1e-5);
      }),
      runs,
    );
  });
});
