import { describe, expect, it } from 'vitest';
import { hostLayer, layerFromHost, type HostTensor, type LayerCache } from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { bruteObserve, close, f32, i32, rng } from './util.js';

const k = createReferenceKernels();

function layer(init: Parameters<typeof hostLayer>[0]): LayerCache<HostTensor> {
  return layerFromHost(k, hostLayer(init));
}

describe('allFinite', () => {
  it('is true only when no element is NaN or infinite', async () => {
    expect(await k.allFinite(f32([3], [1, -2, 0]))).toBe(true);
    expect(await k.allFinite(f32([2], [1, Number.NaN]))).toBe(false);
    expect(await k.allFinite(f32([2], [Number.POSITIVE_INFINITY, 0]))).toBe(false);
    expect(await k.allFinite(f32([1], [Number.NEGATIVE_INFINITY]))).toBe(false);
    expect(await k.allFinite(f32([0], []))).toBe(true);
    expect(await k.allFinite(i32([2], [2147483647, -2147483648]))).toBe(true);
  });
});

describe('accumulate', () => {
  it('adds element-wise', () => {
    // [1, 2, 3] + [0.5, 0.25, -1] = [1.5, 2.25, 2]
    const out = k.accumulate(f32([1, 3], [1, 2, 3]), f32([1, 3], [0.5, 0.25, -1]));
    expect(out.shape).toEqual([1, 3]);
    close(out.data, [1.5, 2.25, 2]);
  });
});

describe('append', () => {
  it('concatenates along length with count 1 and score 0 for new slots', () => {
    const l = layer({ heads: 2, length: 1, headDim: 2, keys: [1, 2, 3, 4], values: [-1, -2, -3, -4], counts: [2, 3], scores: [0.5, 0.25] });
    const out = k.append(l, f32([2, 1, 2], [5, 6, 7, 8]), f32([2, 1, 2], [-5, -6, -7, -8]), i32([2, 1], [4, 9]));
    expect(out.keys.shape).toEqual([2, 2, 2]);
    // head 0: [1,2] then [5,6]; head 1: [3,4] then [7,8]
    expect(Array.from(out.keys.data)).toEqual([1, 2, 5, 6, 3, 4, 7, 8]);
    expect(Array.from(out.values.data)).toEqual([-1, -2, -5, -6, -3, -4, -7, -8]);
    expect(Array.from(out.positions.data)).toEqual([0, 4, 0, 9]);
    expect(Array.from(out.counts.data)).toEqual([2, 1, 3, 1]);
    expect(Array.from(out.scores.data)).toEqual([0.5, 0, 0.25, 0]);
  });

  it('appends to an empty cache', () => {
    const l = layer({ heads: 1, length: 0, headDim: 2, keys: [], values: [] });
    const out = k.append(l, f32([1, 2, 2], [1, 2, 3, 4]), f32([1, 2, 2], [5, 6, 7, 8]), i32([1, 2], [0, 1]));
    expect(out.keys.shape).toEqual([1, 2, 2]);
    expect(Array.from(out.values.data)).toEqual([5, 6, 7, 8]);
    expect(Array.from(out.counts.data)).toEqual([1, 1]);
  });
});

describe('topK', () => {
  const scores = f32([2, 5], [0.1, 0.5, 0.5, 0.2, 0.9, 3, 1, 2, 2, 0]);

  it('picks the highest scores, ties to the lower index, sorted by slot', () => {
    // head 0: 0.9 @4, then 0.5 @1 beats 0.5 @2 (lower index) -> [1, 4]
    // head 1: 3 @0, then 2 @2 beats 2 @3 -> [0, 2]
    const out = k.topK(scores, 2, 0, 5);
    expect(out.shape).toEqual([2, 2]);
    expect(out.dtype).toBe('int32');
    expect(Array.from(out.data)).toEqual([1, 4, 0, 2]);
  });

  it('restricts to [from, to)', () => {
    // head 0 slots 1..3 = [0.5, 0.5, 0.2] -> [1, 2]; head 1 slots 1..3 = [1, 2, 2] -> [2, 3]
    expect(Array.from(k.topK(scores, 2, 1, 4).data)).toEqual([1, 2, 2, 3]);
    // k = to - from returns the whole window
    expect(Array.from(k.topK(scores, 3, 1, 4).data)).toEqual([1, 2, 3, 1, 2, 3]);
    expect(k.topK(scores, 0, 2, 2).shape).toEqual([2, 0]);
  });

  it('ranks NaN like -Infinity', () => {
    // [NaN, 1, -Inf]: 1 @1 first; NaN @0 and -Inf @2 tie, the lower index wins -> [0, 1]
    expect(Array.from(k.topK(f32([1, 3], [Number.NaN, 1, Number.NEGATIVE_INFINITY]), 2, 0, 3).data)).toEqual([0, 1]);
  });

  it('handles all-equal scores (ties to lower indices)', () => {
    expect(Array.from(k.topK(f32([1, 6], [2, 2, 2, 2, 2, 2]), 3, 0, 6).data)).toEqual([0, 1, 2]);
  });
});

describe('gather', () => {
  it('gathers every field per head', () => {
    const l = layer({
      heads: 2, length: 3, headDim: 1,
      keys: [10, 11, 12, 20, 21, 22], values: [-10, -11, -12, -20, -21, -22],
      positions: [0, 1, 2, 5, 6, 7], counts: [1, 2, 3, 4, 5, 6], scores: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
    });
    const out = k.gather(l, i32([2, 2], [2, 0, 1, 1]));
    expect(Array.from(out.keys.data)).toEqual([12, 10, 21, 21]);
    expect(Array.from(out.values.data)).toEqual([-12, -10, -21, -21]);
    expect(Array.from(out.positions.data)).toEqual([2, 0, 6, 6]);
    expect(Array.from(out.counts.data)).toEqual([3, 1, 5, 5]);
    close(out.scores.data, [0.3, 0.1, 0.5, 0.5]);
    expect(out.keys.shape).toEqual([2, 2, 1]);
  });
});

describe('adjacentCosine', () => {
  it('computes cos of neighbours, 0 for a zero norm', () => {
    // [1,0]·[1,1] = 1/sqrt(2) = 0.70710678; [1,1] vs [0,0] -> 0; [0,0] vs [-2,0] -> 0; [-2,0]·[3,0] = -6/6 = -1
    const keys = f32([1, 5, 2], [1, 0, 1, 1, 0, 0, -2, 0, 3, 0]);
    const out = k.adjacentCosine(keys);
    expect(out.shape).toEqual([1, 4]);
    close(out.data, [0.70710678, 0, 0, -1]);
  });

  it('sums tiny and huge rows in float64, where float32 squares would underflow or overflow', () => {
    // Each pair is [s,0] next to [s,s]: cos = 1/sqrt(2) at every scale s. In float32 (1e-30)^2 underflows to 0
    // and (1e30)^2 overflows, so only the float64 fallback outside the lane range gets 0.70710678.
    for (const s of [1e-30, 1e-20, 1, 1e20, 1e30]) {
      const out = k.adjacentCosine(f32([1, 2, 2], [s, 0, s, s]));
      close(out.data, [0.70710678], 1e-7);
    }
    // A row with one NaN element has no defined norm: 0, as for a zero norm.
    close(k.adjacentCosine(f32([1, 2, 2], [1, Number.NaN, 1, 1])).data, [0]);
  });

  it('is within 1e-6 of a float64 cosine on random rows (float32 lane sums)', () => {
    const r = rng(7);
    let worst = 0;
    for (let t = 0; t < 60; t++) {
      const L = 20;
      const D = 1 + Math.floor(r() * 200);
      const shift = t % 2 === 0 ? 0 : 2; // shifted rows: cosines near 1, where KVMerger's threshold lies
      const data = Float32Array.from({ length: L * D }, () => r() * 4 - 2 + shift);
      const got = k.adjacentCosine(f32([1, L, D], data)).data;
      for (let i = 0; i + 1 < L; i++) {
        let dot = 0;
        let na = 0;
        let nb = 0;
        for (let d = 0; d < D; d++) {
          const x = data[i * D + d]!;
          const y = data[(i + 1) * D + d]!;
          dot += x * y;
          na += x * x;
          nb += y * y;
        }
        worst = Math.max(worst, Math.abs(got[i]! - Math.max(-1, Math.min(1, dot / Math.sqrt(na * nb)))));
      }
    }
    expect(worst).toBeLessThan(1e-6);
    expect(worst).toBeGreaterThan(0); // float32 sums: not the float64 values
  });

  it('returns [heads, 0] for a single slot', () => {
    expect(k.adjacentCosine(f32([2, 1, 3], [1, 2, 3, 4, 5, 6])).shape).toEqual([2, 0]);
  });
});

describe('keyNorms', () => {
  it('computes the L2 norm of each key, 0 for a zero key and for head dim 0', () => {
    // |(3, 4)| = 5, |(0, 0)| = 0, |(1, 1)| = sqrt(2), |(-6, 8)| = 10
    const out = k.keyNorms(f32([2, 2, 2], [3, 4, 0, 0, 1, 1, -6, 8]));
    expect(out.shape).toEqual([2, 2]);
    close(out.data, [5, 0, 1.41421356, 10]);
    expect(Array.from(k.keyNorms(f32([1, 3, 0], [])).data)).toEqual([0, 0, 0]);
  });
});

describe('linkSegments', () => {
  // head 0: links 0, 1, 4 join runs {0, 1, 2}, {3}, {4, 5}; head 1: links 2, 3, 4 join {0}, {1}, {2, 3, 4, 5}.
  const links = i32([2, 3], [0, 1, 4, 2, 3, 4]);
  const scores = f32([2, 6], [0.1, 0.5, 0.5, 9, Number.NaN, 2, 1, 2, Number.NEGATIVE_INFINITY, Number.NaN, 3, 3]);

  it('numbers the runs and picks the highest score of each, ties to the lower slot, NaN lowest', () => {
    const out = k.linkSegments(links, scores);
    expect(out.segment.shape).toEqual([2, 6]);
    expect(Array.from(out.segment.data)).toEqual([0, 0, 0, 1, 2, 2, 0, 1, 2, 2, 2, 2]);
    // head 0: 0.5 @1 ties 0.5 @2 -> 1; {3} -> 3; NaN @4 ranks lowest, so 2 @5 wins -> 5.
    // head 1: {0} -> 0; {1} -> 1; NaN @3 ranks as -Infinity, tying -Infinity @2, then 3 @4 wins and 3 @5 ties it -> 4.
    expect(out.pivot.shape).toEqual([2, 3]);
    expect(Array.from(out.pivot.data)).toEqual([1, 3, 5, 0, 1, 4]);
  });

  it('keeps every slot as its own run without links, and refuses links out of order, out of range or too many', () => {
    const none = k.linkSegments(i32([1, 0], []), f32([1, 3], [1, 2, 3]));
    expect(Array.from(none.segment.data)).toEqual([0, 1, 2]);
    expect(Array.from(none.pivot.data)).toEqual([0, 1, 2]);
    const three = f32([1, 4], [1, 2, 3, 4]);
    expect(() => k.linkSegments(i32([1, 2], [1, 1]), three)).toThrow(/linkSegments links\[0, 1\] = 1: each head's links must be strictly ascending within \[0, 2\]/);
    expect(() => k.linkSegments(i32([1, 1], [3]), three)).toThrow(/links\[0, 0\] = 3/);
    expect(() => k.linkSegments(i32([1, 1], [-1]), three)).toThrow(/links\[0, 0\] = -1/);
    expect(() => k.linkSegments(i32([1, 4], [0, 1, 2, 3]), three)).toThrow(/4 links per head, but 4 slots have only 3/);
    expect(() => k.linkSegments(f32([1, 1], [0]), three)).toThrow(/linkSegments links/);
  });
});

describe('mergeSegments', () => {
  // keys k0=[0,0], k1=[1,0], k2=[0,2], k3=[5,5]; values v0=[1,2], v1=[3,4], v2=[5,6], v3=[7,8]
  const l = layer({
    heads: 1, length: 4, headDim: 2,
    keys: [0, 0, 1, 0, 0, 2, 5, 5], values: [1, 2, 3, 4, 5, 6, 7, 8],
    positions: [0, 1, 2, 3], counts: [1, 2, 1, 1], scores: [0.1, 0.2, 0.3, 0.4],
  });
  // run 0 = {0, 1} pivot 0, slot 2 dropped, run 1 = {3} pivot 3; sigma 1
  const plan = (valueScale: 'count' | 'none') => ({ segment: i32([1, 4], [0, 0, -1, 1]), pivot: i32([1, 2], [0, 3]), sigma: f32([1, 2], [1, 1]), valueScale });

  it('merges with Gaussian weights, count-scaled values', () => {
    // g0 = 1, g1 = exp(-||k0-k1||^2 / 2) = exp(-0.5) = 0.60653066; w1 = g1/(1+g1) = 0.37754067, w0 = 0.62245933
    // key = w0 k0 + w1 k1 = [0.37754067, 0]
    // C = 1 + 2 = 3; value = 3 (w0 v0/1 + w1 v1/2) = 3 [w0 + 1.5 w1, 2 w0 + 2 w1] = [3.56631100, 6]
    const out = k.mergeSegments(l, plan('count'));
    expect(out.keys.shape).toEqual([1, 2, 2]);
    close(out.keys.data, [0.37754067, 0, 5, 5]);
    close(out.values.data, [3.566311, 6, 7, 8]);
    expect(Array.from(out.positions.data)).toEqual([0, 3]);
    expect(Array.from(out.counts.data)).toEqual([3, 1]);
    close(out.scores.data, [0.3, 0.4]); // 0.1 + 0.2, and 0.4
  });

  it("uses plain weighted values with valueScale 'none'", () => {
    // w0 v0 + w1 v1 = [1 + 2 w1, 2 + 2 w1] = [1.75508134, 2.75508134]
    const out = k.mergeSegments(l, plan('none'));
    close(out.values.data, [1.75508134, 2.75508134, 7, 8]);
    close(out.keys.data, [0.37754067, 0, 5, 5]);
  });

  it('keeps a pivot weight of 1 when 2 sigma^2 underflows', () => {
    // sigma 1e-30 -> every non-pivot weight is 0: the merged slot is the pivot's key, value C * v_p / c_p
    const out = k.mergeSegments(l, { segment: i32([1, 4], [0, 0, -1, 1]), pivot: i32([1, 2], [1, 3]), sigma: f32([1, 2], [1e-30, 1]), valueScale: 'count' });
    close(out.keys.data, [1, 0, 5, 5]);
    close(out.values.data, [4.5, 6, 7, 8]); // 3 * [3, 4] / 2
  });

  it('merges a run of three members around its pivot', () => {
    // run 0 = {0, 1, 2} pivot 0, sigma 1: g = [1, exp(-0.5), exp(-2)] = [1, 0.60653066, 0.13533528], sum 1.74186594
    // key = (g1 [1, 0] + g2 [0, 2]) / sum = [0.34820743, 0.15539116]
    // count mode, C = 1 + 2 + 1 = 4: value = 4 (v0 + g1 v1 / 2 + g2 v2) / sum = [5.93954412, 9.24312927]
    const out = k.mergeSegments(l, { segment: i32([1, 4], [0, 0, 0, 1]), pivot: i32([1, 2], [0, 3]), sigma: f32([1, 2], [1, 1]), valueScale: 'count' });
    close(out.keys.data, [0.34820743, 0.15539116, 5, 5]);
    close(out.values.data, [5.93954412, 9.24312927, 7, 8]);
    expect(Array.from(out.counts.data)).toEqual([4, 1]);
    // 'none' mode: (v0 + g1 v1 + g2 v2) / sum = [2.00719717, 3.00719717]
    close(k.mergeSegments(l, { segment: i32([1, 4], [0, 0, 0, 1]), pivot: i32([1, 2], [0, 3]), sigma: f32([1, 2], [1, 1]), valueScale: 'none' }).values.data, [2.00719717, 3.00719717, 7, 8]);
  });
});

describe('mergeIntoNeighbours', () => {
  it('gathers kept slots and spreads gated source values over the target window', () => {
    // values (D = 2) v0=[10,1], v1=[20,2], v2=[30,3], v3=[40,4]; keep [0,2,3] -> [[10,1],[30,3],[40,4]]
    // source 1 -> keep[0..1] gets + 1 * [20,2] / 2 = [10,1]: [[20,2],[40,4],[40,4]]
    // source 1 again with gate 0: no change; source 2 -> keep[2] gets + [30,3]: [[20,2],[40,4],[70,7]]
    const l = layer({ heads: 1, length: 4, headDim: 2, keys: [1, 1, 2, 2, 3, 3, 4, 4], values: [10, 1, 20, 2, 30, 3, 40, 4], scores: [0.1, 0.2, 0.3, 0.4] });
    const out = k.mergeIntoNeighbours(l, {
      keep: i32([1, 3], [0, 2, 3]),
      source: i32([1, 3], [1, 1, 2]),
      targetStart: i32([1, 3], [0, 1, 2]),
      targetCount: i32([1, 3], [2, 2, 1]),
      gate: f32([1, 3], [1, 0, 1]),
    });
    close(out.values.data, [20, 2, 40, 4, 70, 7]);
    expect(Array.from(out.keys.data)).toEqual([1, 1, 3, 3, 4, 4]);
    expect(Array.from(out.positions.data)).toEqual([0, 2, 3]);
    close(out.scores.data, [0.1, 0.3, 0.4]);
  });

  it('skips sources with targetCount 0 whatever their targetStart', () => {
    const l = layer({ heads: 1, length: 2, headDim: 1, keys: [1, 2], values: [5, 7] });
    const out = k.mergeIntoNeighbours(l, { keep: i32([1, 1], [1]), source: i32([1, 1], [0]), targetStart: i32([1, 1], [99]), targetCount: i32([1, 1], [0]), gate: f32([1, 1], [1]) });
    expect(Array.from(out.values.data)).toEqual([7]);
  });
});

describe('observe', () => {
  // kv head 0 with keys [1], [0], [2] at positions 0, 1, 2; two query heads (one GQA group), two queries
  // at positions 1 and 2; query head 0: [1], [0]; query head 1: [2], [-1]; scale 1.
  // qh0 t0 sees slots 0,1, logits [1,0] -> [0.73105858, 0.26894142, 0]; t1 logits [0,0,0] -> 1/3 each
  // qh1 t0 logits [2,0] -> [0.88079708, 0.11920292, 0]; t1 logits [-1,0,-2] -> [0.24472847, 0.66524096, 0.09003057]
  // sums: qh0 [1.06439191, 0.60227475, 0.33333333]; qh1 [1.12552555, 0.78444388, 0.09003057]
  const l = layer({ heads: 1, length: 3, headDim: 1, keys: [1, 0, 2], values: [0, 0, 0] });
  const q = f32([2, 2, 1], [1, 0, 2, -1]);
  const qp = i32([2], [1, 2]);

  it('reduces a group by mean (default)', () => {
    const o = k.observe(l, q, qp, { scale: 1 });
    close(o.attention.data, [1.09495873, 0.69335932, 0.21168195]);
    close(o.lastAttention.data, [0.2890309, 0.49928714, 0.21168195]);
  });

  it('reduces a group by max and sum', () => {
    const mx = k.observe(l, q, qp, { scale: 1, groupReduction: 'max' });
    close(mx.attention.data, [1.12552555, 0.78444388, 0.33333333]);
    close(mx.lastAttention.data, [0.33333333, 0.66524096, 0.33333333]);
    const sm = k.observe(l, q, qp, { scale: 1, groupReduction: 'sum' });
    close(sm.attention.data, [2.18991746, 1.38671863, 0.42336391]);
  });

  it('maps query heads to kv heads in contiguous groups', () => {
    // kv heads 0 and 1 hold the same keys; query heads 0,1 -> kv 0 and 2,3 -> kv 1. Query heads 2,3 equal
    // the case above, query heads 0,1 are zero (uniform over the visible slots).
    const l2 = layer({ heads: 2, length: 3, headDim: 1, keys: [1, 0, 2, 1, 0, 2], values: [0, 0, 0, 0, 0, 0] });
    const o = k.observe(l2, f32([4, 2, 1], [0, 0, 0, 0, 1, 0, 2, -1]), qp, { scale: 1 });
    // kv 0: t0 sees 2 slots -> [0.5, 0.5, 0], t1 -> 1/3 each: sums [0.83333333, 0.83333333, 0.33333333]
    close(o.attention.data, [0.83333333, 0.83333333, 0.33333333, 1.09495873, 0.69335932, 0.21168195]);
  });

  it('uses 1/sqrt(headDim) by default and gives zeros to a query that sees nothing', () => {
    // q = k0 = [1,1,1,1]: logit 4/2 = 2; k1 = 0: logit 0 -> [e^2/(e^2+1), 1/(e^2+1)] = [0.88079708, 0.11920292]
    // the second query at position -1 sees no slot -> contributes zeros, and is the last one
    const l4 = layer({ heads: 1, length: 2, headDim: 4, keys: [1, 1, 1, 1, 0, 0, 0, 0], values: new Array(8).fill(0) });
    const o = k.observe(l4, f32([1, 2, 4], [1, 1, 1, 1, 1, 1, 1, 1]), i32([2], [5, -1]));
    close(o.attention.data, [0.88079708, 0.11920292]);
    close(o.lastAttention.data, [0, 0]);
  });

  it('adds log(count) to the logits when proportional', () => {
    // equal logits, counts [1, 3] -> [1/4, 3/4]
    const lp = layer({ heads: 1, length: 2, headDim: 1, keys: [0, 0], values: [0, 0], counts: [1, 3] });
    const o = k.observe(lp, f32([1, 1, 1], [1]), i32([1], [10]), { proportional: true });
    close(o.attention.data, [0.25, 0.75]);
    close(k.observe(lp, f32([1, 1, 1], [1]), i32([1], [10])).attention.data, [0.5, 0.5]);
  });
});

describe('observe on a long cache', () => {
  it('matches the direct computation when query rows are processed in several chunks', () => {
    // 100k slots leave room for only 2 of the 6 query rows (2 heads x 3 queries) per chunk of logits,
    // so this covers full chunks, and a chunk boundary inside a query head's rows.
    const L = 100_000;
    const r = rng(5);
    const l = layer({ heads: 1, length: L, headDim: 1, keys: Float32Array.from({ length: L }, () => r() * 4 - 2), values: new Float32Array(L) });
    const q = f32([2, 3, 1], [1, -2, 0.5, 3, 0.25, -1]);
    const qp = i32([3], [10, 50_000, 99_999]);
    for (const reduction of ['mean', 'max'] as const) {
      const o = k.observe(l, q, qp, { groupReduction: reduction });
      const want = bruteObserve(l, q, qp, reduction, 1, false);
      close(o.attention.data, want.attention, 1e-6);
      close(o.lastAttention.data, want.lastAttention, 1e-6);
    }
  });
});
