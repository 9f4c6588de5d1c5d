import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { hostTensor, selectSlots } from '@kvfold/core';
import { HEAVY, RECENT, UNPROTECTED, candidateLinks, linkRanking, planLayer, protectSlots, type PlanInput } from '../src/index.js';

const base = { heads: 1, eps: 0.75, minSimilarity: -1, sets: 'per-head' } as const;
/** No slot protected, one layout per head (or one shared). */
const none = (layouts: number, length: number) => Array.from({ length: layouts }, () => new Uint8Array(length));
const ref = createReferenceKernels();
/** Two threads splitting every call (the wasm topK's per-head split). */
const refThreads = createReferenceKernels({ threads: 2, threadMinBytes: 0 });
/** Protection by the policy's own rule (shared selection on the reference topK). */
const protect = (scores: readonly number[], heads: number, length: number, recent: number, heavy: number, shared = false) =>
  protectSlots(ref, ref.fromHost(hostTensor('float32', [heads, length], scores)), scores, { heads, length, recent, heavy, shared });

describe('protectSlots', () => {
  it('marks the recent window and the top scores outside it, ties to the lower index', async () => {
    const p = await protect([0.5, 0.9, 0.5, 0.1, 0.5, 2, 3], 1, 7, 2, 2);
    // slots 5, 6 recent; among 0..4 the top two are 1 (0.9) and 0 (0.5, lower index than 2 and 4)
    expect(p.map((r) => Array.from(r))).toEqual([[HEAVY, HEAVY, UNPROTECTED, UNPROTECTED, UNPROTECTED, RECENT, RECENT]]);
  });
  it('ranks a shared layout by the head-mean scores; protects everything when recent + heavy cover the cache', async () => {
    // head means: [1, 1.5, 0.5, 2]; recent 1 -> slot 3; heavy 1 among 0..2 -> slot 1
    const shared = await protect([2, 0, 1, 4, /* head 1 */ 0, 3, 0, 0], 2, 4, 1, 1, true);
    expect(shared.map((r) => Array.from(r))).toEqual([[UNPROTECTED, HEAVY, UNPROTECTED, RECENT]]);
    const all = await protect([1, 2, 3], 1, 3, 1, 5);
    expect(all.map((r) => Array.from(r))).toEqual([[HEAVY, HEAVY, RECENT]]);
  });
});

describe('candidateLinks', () => {
  it('drops links touching protected slots or below the floor, sorts best first with ties to the lower index', () => {
    const prot = Uint8Array.from([0, 0, 0, 2, 0, 0]);
    expect(candidateLinks([0.5, 0.9, 0.99, 0.99, 0.5], prot, -1)).toEqual([1, 0, 4]);
    expect(candidateLinks([0.5, 0.9, 0.99, 0.99, 0.5], prot, 0.6)).toEqual([1]);
    expect(candidateLinks([0.5, 0.9, 0.99, 0.99, 0.5], prot, -1, 0.5)).toEqual([1]);
  });
});

describe('planLayer: the worked example', () => {
  // adjacent cosines 0.85, 0.82, 0.6, 0.7; eps 0.75; k3 (slot 2) has the highest attention
  const cosine = [0.85, 0.82, 0.6, 0.7];
  const scores = [0.1, 0.2, 0.9, 0.3, 0.05];

  it('paper mode finds {k1,k2,k3},{k4},{k5} with pivot k3', () => {
    const plan = planLayer({ ...base, length: 5, scores, cosine, target: 3, mode: 'paper', protection: none(1, 5) });
    expect(Array.from(plan.segment)).toEqual([0, 0, 0, 1, 2]);
    expect(Array.from(plan.pivot)).toEqual([2, 3, 4]);
    expect(plan.outLength).toBe(3);
    expect(plan.effectiveEps[0]).toBeCloseTo(0.82, 12);
  });

  it('exact mode with budget 2 adds the next best link (0.7) and reports it as the effective eps', () => {
    const plan = planLayer({ ...base, length: 5, scores, cosine, target: 2, mode: 'exact', protection: none(1, 5) });
    expect(Array.from(plan.segment)).toEqual([0, 0, 0, 1, 1]);
    expect(Array.from(plan.pivot)).toEqual([2, 3]);
    expect(plan.effectiveEps[0]).toBeCloseTo(0.7, 12);
    expect(plan.evicted[0]).toBe(0);
  });
});

describe('planLayer: paper mode aligns heads', () => {
  it('every head merges M = the smallest per-head count of links above eps, each its best ones', () => {
    // head 0: three links above 0.75 (0.9 at 0, 0.95 at 2, 0.8 at 4); head 1: one (0.99 at 5)
    const cosine = [0.9, 0.1, 0.95, 0.1, 0.8, 0.1, /* head 1 */ 0.1, 0.1, 0.1, 0.1, 0.1, 0.99];
    const plan = planLayer({ ...base, heads: 2, length: 7, scores: new Array(14).fill(0), cosine, target: 1, mode: 'paper', protection: none(2, 7) });
    expect(plan.outLength).toBe(6);
    expect(Array.from(plan.segment.subarray(0, 7))).toEqual([0, 1, 2, 2, 3, 4, 5]);
    expect(Array.from(plan.segment.subarray(7))).toEqual([0, 1, 2, 3, 4, 5, 5]);
    expect(plan.merged).toEqual([1, 1]);
  });
});

describe('planLayer: trimming', () => {
  it('evicts the lowest unprotected slots, then the lowest heavy hitters, when links run out', async () => {
    // no link may merge (floor 1 with cosines < 1); 10 slots, budget 4, recent 3, heavy 3 -> protected 6 > 4
    const scores = [5, 1, 7, 2, 6, 0.5, 9, 3, 3, 3];
    // recent 3 -> slots 7..9; heavy hitters among 0..6: 6 (9), 2 (7), 4 (6); unprotected all go, then heavies 4 and 2
    const protection = await protect(scores, 1, 10, 3, 3);
    expect(Array.from(protection[0]!)).toEqual([0, 0, HEAVY, 0, HEAVY, 0, HEAVY, RECENT, RECENT, RECENT]);
    const plan = planLayer({ ...base, length: 10, scores, cosine: new Array(9).fill(0.5), target: 4, mode: 'exact', minSimilarity: 1, protection });
    const kept = Array.from(plan.segment).flatMap((s, i) => (s >= 0 ? [i] : []));
    expect(kept).toEqual([6, 7, 8, 9]);
    expect(plan.evicted[0]).toBe(6);
  });

  it('a merged group is scored by the sum of its members', () => {
    // links 0-1 and 2-3 could merge but only one merge is needed... target 2 of 4 with one allowed link
    const plan = planLayer({ ...base, length: 4, scores: [0.3, 0.3, 0.5, 0.1], cosine: [0.9, 0.1, 0.2], target: 2, mode: 'exact', minSimilarity: 0.5, protection: none(1, 4) });
    // merges 0-1 (sum 0.6); then three groups {0,1}=0.6, {2}=0.5, {3}=0.1 -> evict 3
    expect(Array.from(plan.segment)).toEqual([0, 0, 1, -1]);
    expect(Array.from(plan.pivot)).toEqual([0, 2]);
  });
});

describe('planLayer: shared layout', () => {
  it('uses head-mean cosine and scores for the layout, each head its own scores for the pivot', () => {
    const cosine = [0.9, 0.1, 0.1, /* head 1 */ 0.5, 0.1, 0.1];
    const scores = [1, 2, 0, 0, /* head 1 */ 3, 1, 0, 0];
    const plan = planLayer({ ...base, heads: 2, length: 4, scores, cosine, target: 3, mode: 'exact', sets: 'shared', protection: none(1, 4) });
    expect(Array.from(plan.segment)).toEqual([0, 0, 1, 2, 0, 0, 1, 2]);
    expect(Array.from(plan.pivot)).toEqual([1, 2, 3, 0, 2, 3]);
  });
});

describe('planLayer properties', () => {
  const input = fc
    .record({
      heads: fc.integer({ min: 1, max: 4 }),
      length: fc.integer({ min: 1, max: 48 }),
      budgetFrac: fc.double({ min: 0, max: 1, noNaN: true }),
      recent: fc.integer({ min: 0, max: 6 }),
      heavy: fc.integer({ min: 0, max: 6 }),
      sets: fc.constantFrom('per-head' as const, 'shared' as const),
      mode: fc.constantFrom('exact' as const, 'paper' as const),
      minSimilarity: fc.constantFrom(-1, 0, 0.5),
      seed: fc.integer(),
    })
    .map((r): Omit<PlanInput, 'protection'> & { recent: number; heavy: number } => {
      let s = r.seed | 0;
      const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) | 0) >>> 0) / 4294967296;
      return {
        heads: r.heads,
        length: r.length,
        target: Math.max(1, Math.round(r.budgetFrac * r.length)),
        recent: r.recent,
        heavy: r.heavy,
        sets: r.sets,
        mode: r.mode,
        eps: 0.75,
        minSimilarity: r.minSimilarity,
        scores: Array.from({ length: r.heads * r.length }, () => Math.floor(rand() * 8) / 4),
        cosine: Array.from({ length: r.heads * Math.max(0, r.length - 1) }, () => rand() * 2 - 1),
      };
    });

  it('segments are a valid SegmentPlan; exact hits the target; pivots are members; recent slots stay singletons', async () => {
    await fc.assert(
      fc.asyncProperty(input, async (inp) => {
        const protection = await protect(Array.from(inp.scores), inp.heads, inp.length, inp.recent, inp.heavy, inp.sets === 'shared');
        const plan = planLayer({ ...inp, protection });
        const { heads, length, outLength } = plan;
        if (inp.mode === 'exact') expect(outLength).toBe(Math.min(length, inp.target));
        for (let h = 0; h < heads; h++) {
          const seg = Array.from(plan.segment.subarray(h * length, (h + 1) * length));
          const kept = seg.filter((x) => x >= 0);
          // non-decreasing, contiguous ids 0..outLength-1
          kept.forEach((x, i) => expect(i === 0 ? x === 0 : x === kept[i - 1]! || x === kept[i - 1]! + 1).toBe(true));
          expect(kept.length === 0 ? 0 : kept[kept.length - 1]! + 1).toBe(outLength);
          for (let o = 0; o < outLength; o++) expect(seg[plan.pivot[h * outLength + o]!]).toBe(o);
          // recent slots are only trimmed when the window alone exceeds the target (lowest scores first)
          const r = inp.mode === 'paper' || inp.recent <= inp.target ? Math.min(inp.recent, length) : 0;
          for (let i = length - r; i < length; i++) {
            expect(seg[i]).toBeGreaterThanOrEqual(0);
            expect(seg.filter((x) => x === seg[i]).length).toBe(1);
          }
          expect(seg.filter((x) => x < 0).length).toBe(plan.evicted[h]);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('merges exactly the best-ranked candidate links (a full sort, ties to the lower index) and pivots on the first highest score', async () => {
    // Cosines on few levels, so ties between links decide as often as values do.
    const tied = input.map((inp) => ({ ...inp, sets: 'per-head' as const, cosine: Array.from(inp.cosine ?? [], (c) => Math.round(c * 4) / 4) }));
    await fc.assert(
      fc.asyncProperty(tied, async (inp) => {
        const protection = await protect(Array.from(inp.scores), inp.heads, inp.length, inp.recent, inp.heavy);
        const plan = planLayer({ ...inp, protection });
        const { heads, length } = plan;
        const n1 = Math.max(0, length - 1);
        const ranked = protection.map((prot, h) => candidateLinks(inp.cosine!.slice(h * n1, (h + 1) * n1), prot, inp.minSimilarity, inp.mode === 'paper' ? inp.eps : undefined));
        const count = inp.mode === 'paper' ? Math.min(...ranked.map((r) => r.length)) : Math.max(0, length - inp.target);
        // With too few candidates exact mode merges them all and trims: the ranking no longer decides.
        fc.pre(ranked.every((r) => r.length >= count));
        for (let h = 0; h < heads; h++) {
          const seg = plan.segment.subarray(h * length, (h + 1) * length);
          const merged = Array.from({ length: n1 }, (_, i) => i).filter((i) => seg[i] === seg[i + 1]);
          expect(merged).toEqual(ranked[h]!.slice(0, count).sort((a, b) => a - b));
          for (let o = 0; o < plan.outLength; o++) {
            const members = Array.from({ length }, (_, i) => i).filter((i) => seg[i] === o);
            const sc = (i: number) => inp.scores[h * length + i]!;
            const best = members.reduce((b, i) => (sc(i) > sc(b) ? i : b), members[0]!);
            expect(plan.pivot[h * plan.outLength + o]).toBe(best);
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  it('plans the same from a float32 cosine row (radix selection) as from the same values as numbers (quickselect)', async () => {
    // Targets between a quarter and all of the cache (the ranking decides there), few cosine levels (ties
    // decide often), both zeros, and every mode and layout.
    const levels = [-1, -0.5, -0, 0, 0.25, 0.5, 0.75, 0.8, 1];
    let rankedCases = 0;
    const f32 = fc
      .tuple(input, fc.integer({ min: 8, max: 64 }), fc.integer({ min: 25, max: 100 }))
      .map(([inp, length, percent]) => {
        let s = length * 7919 + percent;
        const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) | 0) >>> 0) / 4294967296;
        const cosine = Array.from({ length: inp.heads * (length - 1) }, (_, i) => Math.fround(i % 3 === 0 ? levels[Math.floor(rand() * levels.length)]! : rand() * 2 - 1));
        const scores = Array.from({ length: inp.heads * length }, () => Math.floor(rand() * 8) / 4);
        return { ...inp, length, target: Math.max(1, Math.round((percent / 100) * length)), cosine, scores };
      });
    await fc.assert(
      fc.asyncProperty(f32, async (inp) => {
        const protection = await protect(Array.from(inp.scores), inp.heads, inp.length, inp.recent, inp.heavy, inp.sets === 'shared');
        const a = planLayer({ ...inp, protection });
        const f32Input = { ...inp, protection, cosine: Float32Array.from(inp.cosine!) };
        const b = planLayer(f32Input);
        expect(Array.from(b.segment)).toEqual(Array.from(a.segment));
        expect(Array.from(b.pivot)).toEqual(Array.from(a.pivot));
        expect([b.merged, b.evicted, b.effectiveEps, b.outLength]).toEqual([a.merged, a.evicted, a.effectiveEps, a.outLength]);
        // The policy's path: the ranking selected by the backend's topK kernel (wasm, one and two threads).
        const ranking = linkRanking(f32Input);
        if (inp.sets === 'shared' && inp.heads > 1) expect(ranking).toBeNull();
        if (!ranking) return;
        rankedCases++;
        for (const kv of [ref, refThreads]) {
          const rows = kv.fromHost(hostTensor('float32', [inp.heads, inp.length - 1], ranking.rows));
          const links = await selectSlots(kv, rows, inp.heads, inp.length - 1, { budget: ranking.count });
          const c = planLayer(f32Input, { count: ranking.count, eligible: ranking.eligible, links });
          expect(Array.from(c.segment)).toEqual(Array.from(a.segment));
          expect(Array.from(c.pivot)).toEqual(Array.from(a.pivot));
          expect([c.merged, c.evicted, c.effectiveEps, c.outLength]).toEqual([a.merged, a.evicted, a.effectiveEps, a.outLength]);
        }
      }),
      { numRuns: 300 },
    );
    // The kernel path must actually have been exercised.
    expect(rankedCases).toBeGreaterThan(30);
  });

  it('refuses a link selection that does not fit the plan', async () => {
    const protection = await protect([1, 2, 3, 4], 1, 4, 0, 0);
    const inp: PlanInput = { heads: 1, length: 4, scores: [1, 2, 3, 4], cosine: Float32Array.of(0.9, 0.8, 0.7), target: 2, protection, mode: 'exact', eps: 0.75, minSimilarity: -1, sets: 'per-head' };
    expect(linkRanking(inp)?.count).toBe(2);
    expect(() => planLayer(inp, { count: 1, eligible: Int32Array.of(3), links: Int32Array.of(0) })).toThrow(/internal error/);
  });
});
