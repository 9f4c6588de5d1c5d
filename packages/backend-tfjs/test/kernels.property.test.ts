import { describe, it } from 'vitest';
import fc from 'fast-check';
import { ArgCheck, hostTensor, observeKernel, type GroupReduction, type KVKernels, type ObserveCall, type LayerCache } from '@kvfold/core';
import type * as tf from '@tensorflow/tfjs-core';
import { observe } from '../src/kernels/observe.js';
import { inspectTensor } from '../src/screen.js';
import {
  checkAllKernels,
  ENGINES,
  expectClose,
  expectLayerClose,
  kernelsFor,
  layerHost,
  randInt,
  randomF32,
  randomQueries,
  randomLayer,
  randomNeighbourPlan,
  randomSegmentPlan,
  ref,
  rng,
  upload,
} from './helpers.js';

/**
 * Medium shapes over the required ranges: 1 to 64 kv heads, head dims 16 to 256, lengths up to 600,
 * with at most 2^17 elements per tensor so a run stays fast.
 */
const medium = fc
  .record({ H: fc.integer({ min: 1, max: 64 }), D: fc.constantFrom(16, 32, 48, 64, 128, 256) })
  .chain(({ H, D }) => fc.record({ H: fc.constant(H), D: fc.constant(D), L: fc.integer({ min: 1, max: Math.max(1, Math.min(600, Math.floor((1 << 17) / (H * D)))) }) }));

/** Small shapes: heads 1..3, length 1..12, head dim 1..8, plus a seed for the tensors. */
const dims = fc.record({ H: fc.integer({ min: 1, max: 3 }), L: fc.integer({ min: 1, max: 12 }), D: fc.integer({ min: 1, max: 8 }), seed: fc.integer() });
const RUNS = { numRuns: 25 };

/** Dispose every tensor of a layer. */
function free(k: KVKernels<tf.Tensor>, l: LayerCache<tf.Tensor>): void {
  k.dispose(l.keys, l.values, l.positions, l.counts, l.scores);
}

for (const engine of ENGINES) {
  describe(`tfjs ${engine}: every kernel equals the reference on random inputs`, () => {
    it('append', async () => {
      const k = await kernelsFor(engine);
      await fc.assert(
        fc.asyncProperty(dims, fc.integer({ min: 0, max: 4 }), async ({ H, L, D, seed }, n) => {
          const r = rng(seed);
          const base = randomLayer(H, L, D, r);
          const nk = randomF32([H, n, D], r);
          const nv = randomF32([H, n, D], r);
          const np = hostTensor('int32', [H, n], Array.from({ length: H * n }, () => randInt(r, 0, 100)));
          const a = upload(k, base);
          const t = [k.fromHost(nk), k.fromHost(nv), k.fromHost(np)] as const;
          const out = k.append(a, ...t);
          expectLayerClose(await layerHost(k, out), await layerHost(ref, ref.append(upload(ref, base), nk, nv, np)), 'append');
          free(k, out);
          free(k, a);
          k.dispose(...t);
        }),
        RUNS,
      );
    });

    it('accumulate', async () => {
      const k = await kernelsFor(engine);
      await fc.assert(
        fc.asyncProperty(dims, async ({ H, L, seed }) => {
          const r = rng(seed);
          const s = randomF32([H, L], r, 0, 3);
          const a = randomF32([H, L], r, 0, 1);
          const [ts, ta] = [k.fromHost(s), k.fromHost(a)];
          const out = k.accumulate(ts, ta);
          expectClose(await k.toHost(out), ref.accumulate(s, a), 'accumulate');
          k.dispose(ts, ta, out);
        }),
        RUNS,
      );
    });

    it('topK over [from, to) with ties, NaN and infinities', async () => {
      const k = await kernelsFor(engine);
      await fc.assert(
        fc.asyncProperty(dims, fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), fc.boolean(), async ({ H, L, seed }, u1, u2, u3, specials) => {
          const r = rng(seed);
          const from = Math.min(L, Math.floor(u1 * (L + 1)));
          const to = Math.min(L, from + Math.floor(u2 * (L - from + 1)));
          const kk = Math.min(to - from, Math.floor(u3 * (to - from + 1)));
          // Few distinct values, so ties are common; optionally NaN and infinities.
          const pool = specials ? [0, 0.25, 0.5, NaN, Infinity, -Infinity] : [0, 0.25, 0.5, 0.75];
          const s = hostTensor('float32', [H, L], Array.from({ length: H * L }, () => (r() < 0.5 ? pool[randInt(r, 0, pool.length - 1)]! : r())));
          const ts = k.fromHost(s);
          const out = k.topK(ts, kk, from, to);
          expectClose(await k.toHost(out), ref.topK(s, kk, from, to), `topK k=${kk} [${from}, ${to})`);
          k.dispose(ts, out);
        }),
        { numRuns: 40 },
      );
    });

    it('gather with duplicates and any order', async () => {
      const k = await kernelsFor(engine);
      await fc.assert(
        fc.asyncProperty(dims, fc.integer({ min: 0, max: 10 }), async ({ H, L, D, seed }, n) => {
          const r = rng(seed);
          const base = randomLayer(H, L, D, r);
          const index = hostTensor('int32', [H, n], Array.from({ length: H * n }, () => randInt(r, 0, L - 1)));
          const a = upload(k, base);
          const ti = k.fromHost(index);
          const out = k.gather(a, ti);
          expectLayerClose(await layerHost(k, out), await layerHost(ref, ref.gather(upload(ref, base), index)), 'gather');
          free(k, out);
          free(k, a);
          k.dispose(ti);
        }),
        RUNS,
      );
    });

    it('adjacentCosine, including zero and repeated keys', async () => {
      const k = await kernelsFor(engine);
      await fc.assert(
        fc.asyncProperty(dims, async ({ H, L, D, seed }) => {
          const r = rng(seed);
          const data = Float32Array.from({ length: H * L * D }, () => r() * 4 - 2);
          // Zero some keys and repeat others: norms of 0 and similarities of exactly 1.
          for (let row = 0; row < H * L; row++) {
            const u = r();
            if (u < 0.15) data.fill(0, row * D, (row + 1) * D);
            else if (u < 0.3 && row % L > 0) data.copyWithin(row * D, (row - 1) * D, row * D);
          }
          const keys = hostTensor('float32', [H, L, D], data);
          const tk = k.fromHost(keys);
          const out = k.adjacentCosine(tk);
          expectClose(await k.toHost(out), ref.adjacentCosine(keys), 'adjacentCosine');
          k.dispose(tk, out);
        }),
        RUNS,
      );
    });

    it('mergeSegments (count and none value scales, dropped slots)', async () => {
      const k = await kernelsFor(engine);
      await fc.assert(
        fc.asyncProperty(dims, fc.constantFrom('count' as const, 'none' as const), async ({ H, L, D, seed }, valueScale) => {
          const r = rng(seed);
          const base = randomLayer(H, L, D, r);
          const p = randomSegmentPlan(H, L, r);
          const a = upload(k, base);
          const plan = { segment: k.fromHost(p.segment), pivot: k.fromHost(p.pivot), sigma: k.fromHost(p.sigma), valueScale };
          const out = k.mergeSegments(a, plan);
          const want = ref.mergeSegments(upload(ref, base), { segment: p.segment, pivot: p.pivot, sigma: p.sigma, valueScale });
          expectLayerClose(await layerHost(k, out), await layerHost(ref, want), `mergeSegments ${valueScale}`);
          free(k, out);
          free(k, a);
          k.dispose(plan.segment, plan.pivot, plan.sigma);
        }),
        RUNS,
      );
    });

    it('mergeIntoNeighbours (windows, 0/1 and fractional gates)', async () => {
      const k = await kernelsFor(engine);
      await fc.assert(
        fc.asyncProperty(dims, fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 1, max: 5 }), async ({ H, L, D, seed }, u, window) => {
          const r = rng(seed);
          const K = Math.min(L, Math.floor(u * (L + 1)));
          const base = randomLayer(H, L, D, r);
          const p = randomNeighbourPlan(H, L, K, window, r);
          const a = upload(k, base);
          const plan = { keep: k.fromHost(p.keep), source: k.fromHost(p.source), targetStart: k.fromHost(p.targetStart), targetCount: k.fromHost(p.targetCount), gate: k.fromHost(p.gate) };
          const out = k.mergeIntoNeighbours(a, plan);
          expectLayerClose(await layerHost(k, out), await layerHost(ref, ref.mergeIntoNeighbours(upload(ref, base), p)), 'mergeIntoNeighbours');
          free(k, out);
          free(k, a);
          k.dispose(...Object.values(plan));
        }),
        RUNS,
      );
    });

    it('observe (GQA groups, causal positions, reductions, proportional, custom scale)', async () => {
      const k = await kernelsFor(engine);
      await fc.assert(
        fc.asyncProperty(
          dims,
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 5 }),
          fc.constantFrom<GroupReduction>('mean', 'max', 'sum'),
          fc.boolean(),
          fc.option(fc.double({ min: 0.05, max: 2, noNaN: true }), { nil: undefined }),
          async ({ H, L, D, seed }, G, n, groupReduction, proportional, scale) => {
            const r = rng(seed);
            const base = randomLayer(H, L, D, r);
            const { q, qp } = randomQueries(base, H * G, n, r);
            const a = upload(k, base);
            const [tq, tp] = [k.fromHost(q), k.fromHost(qp)];
            const opts = { groupReduction, proportional, scale };
            const out = k.observe(a, tq, tp, opts);
            const want = ref.observe(upload(ref, base), q, qp, opts);
            expectClose(await k.toHost(out.attention), want.attention, 'observe sums');
            expectClose(await k.toHost(out.lastAttention), want.lastAttention, 'observe last');
            k.dispose(tq, tp, out.attention, out.lastAttention);
            free(k, a);
          },
        ),
        RUNS,
      );
    });

    it('every kernel on medium random shapes (1-64 heads, head dims 16-256)', async () => {
      const k = await kernelsFor(engine);
      await fc.assert(
        fc.asyncProperty(medium, async ({ H, L, D }) => checkAllKernels(k, H, L, D)),
        { numRuns: 10 },
      );
    });

    it('observe: batched and head-by-head programs, and any chunking, give the reference result', async () => {
      const k = await kernelsFor(engine);
      await fc.assert(
        fc.asyncProperty(dims, fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 7 }), fc.integer({ min: 1, max: 64 }), fc.boolean(), fc.constantFrom<GroupReduction>('mean', 'max', 'sum'), async ({ H, L, D, seed }, G, n, block, batched, groupReduction) => {
          const r = rng(seed);
          const base = randomLayer(H, L, D, r);
          const { q, qp } = randomQueries(base, H * G, n, r);
          // Uploading through the kernels object makes its engine current for the direct kernel call.
          const a = upload(k, base);
          const [tq, tp] = [k.fromHost(q), k.fromHost(qp)];
          const opts = { groupReduction, proportional: r() < 0.5 };
          const call = observeKernel.validate(new ArgCheck(inspectTensor), a, tq, tp, opts) as ObserveCall<tf.Tensor>;
          const out = observe(call, block, batched ? Infinity : 0);
          const want = ref.observe(upload(ref, base), q, qp, opts);
          expectClose(await k.toHost(out.attention), want.attention, `sums (block ${block}, ${batched ? 'batched' : 'per head'})`);
          expectClose(await k.toHost(out.lastAttention), want.lastAttention, `last (block ${block}, ${batched ? 'batched' : 'per head'})`);
          k.dispose(tq, tp, out.attention, out.lastAttention);
          free(k, a);
        }),
        { numRuns: 40 },
      );
    });

    it('allFinite and the host round trip', async () => {
      const k = await kernelsFor(engine);
      await fc.assert(
        fc.asyncProperty(dims, fc.constantFrom(0, NaN, Infinity, -Infinity), async ({ H, L, D, seed }, special) => {
          const r = rng(seed);
          const x = randomF32([H, L, D], r);
          const i = randInt(r, 0, H * L * D - 1);
          (x.data as Float32Array)[i] = special;
          const t = k.fromHost(x);
          const back = await k.toHost(t);
          expectClose(back, x, 'round trip');
          if ((await k.allFinite(t)) !== (await ref.allFinite(x))) throw new Error(`allFinite differs for ${special}`);
          k.dispose(t);
        }),
        RUNS,
      );
    });
  });
}
