import { describe, it } from 'vitest';
import fc from 'fast-check';
import { ArgCheck, hostTensor, observeKernel, type GroupReduction, type KVKernels, type ObserveCall, type LayerCache, type HostLayer, type HostTensor } from '@kvfold/core';
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

/** The mergeIntoNeighbours regimes: shapes, kept slots per head `K` and the widest target window. */
const neighbourCases = [
  {
    name: 'windows, 0/1 and fractional gates',
    cases: fc
      .tuple(dims, fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 1, max: 5 }))
      .map(([d, u, window]) => ({ ...d, K: Math.min(d.L, Math.floor(u * (d.L + 1))), window })),
  },
  {
    // sources x window x 8 <= 64 <= kept slots: the regime that takes the spread.
    name: 'a few sources: a decode step takes the explicit spread, not the cumsum',
    cases: fc
      .tuple(fc.record({ H: fc.integer({ min: 1, max: 3 }), L: fc.integer({ min: 70, max: 120 }), D: fc.integer({ min: 1, max: 8 }), seed: fc.integer() }), fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 4 }))
      .map(([d, sources, window]) => ({ ...d, K: d.L - sources, window })),
  },
];

/** A layer kernel called with a layer and some tensors (in the order the test lists them). */
type LayerOp = <T>(kernels: KVKernels<T>, layer: LayerCache<T>, inputs: readonly T[]) => LayerCache<T>;

/** Run `op` on `base` and `inputs` here and on the reference, expect the same layer, and free what it made here. */
async function expectLayerOpMatch(k: KVKernels<tf.Tensor>, base: HostLayer, inputs: readonly HostTensor[], op: LayerOp, what: string): Promise<void> {
  const a = upload(k, base);
  const t = inputs.map((x) => k.fromHost(x));
  const out = op(k, a, t);
  expectLayerClose(await layerHost(k, out), await layerHost(ref, op(ref, upload(ref, base), inputs)), what);
  free(k, out);
  free(k, a);
  k.dispose(...t);
}

/** Layer kernels that take `n` rows per head besides the layer: their inputs, drawn after the layer. */
const rowCases: { name: string; what: string; maxRows: number; inputs: (H: number, L: number, D: number, n: number, r: () => number) => HostTensor[]; op: LayerOp }[] = [
  {
    name: 'append',
    what: 'append',
    maxRows: 4,
    inputs: (H, _L, D, n, r) => [randomF32([H, n, D], r), randomF32([H, n, D], r), hostTensor('int32', [H, n], Array.from({ length: H * n }, () => randInt(r, 0, 100)))],
    op: (kk, l, [keys, values, positions]) => kk.append(l, keys!, values!, positions!),
  },
  {
    name: 'gather with duplicates and any order',
    what: 'gather',
    maxRows: 10,
    inputs: (H, L, _D, n, r) => [hostTensor('int32', [H, n], Array.from({ length: H * n }, () => randInt(r, 0, L - 1)))],
    op: (kk, l, [index]) => kk.gather(l, index!),
  },
];

for (const engine of ENGINES) {
  describe(`tfjs ${engine}: every kernel equals the reference on random inputs`, () => {
    it.each(rowCases)('$name', async ({ what, maxRows, inputs, op }) => {
      const k = await kernelsFor(engine);
      await fc.assert(
        fc.asyncProperty(dims, fc.integer({ min: 0, max: maxRows }), async ({ H, L, D, seed }, n) => {
          const r = rng(seed);
          const base = randomLayer(H, L, D, r);
          await expectLayerOpMatch(k, base, inputs(H, L, D, n, r), op, what);
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
          const merge: LayerOp = (kk, l, [segment, pivot, sigma]) => kk.mergeSegments(l, { segment: segment!, pivot: pivot!, sigma: sigma!, valueScale });
          await expectLayerOpMatch(k, base, [p.segment, p.pivot, p.sigma], merge, `mergeSegments ${valueScale}`);
        }),
        RUNS,
      );
    });

    it.each(neighbourCases)('mergeIntoNeighbours ($name)', async ({ cases }) => {
      const k = await kernelsFor(engine);
      await fc.assert(
        fc.asyncProperty(cases, async ({ H, L, D, seed, K, window }) => {
          const r = rng(seed);
          const base = randomLayer(H, L, D, r);
          const p = randomNeighbourPlan(H, L, K, window, r);
          const merge: LayerOp = (kk, l, [keep, source, targetStart, targetCount, gate]) => kk.mergeIntoNeighbours(l, { keep: keep!, source: source!, targetStart: targetStart!, targetCount: targetCount!, gate: gate! });
          await expectLayerOpMatch(k, base, [p.keep, p.source, p.targetStart, p.targetCount, p.gate], merge, 'mergeIntoNeighbours');
        }),
        RUNS,
      );
    });

    // wasm's scan and the cumsum would spread an infinity or NaN past its window (and 0 x infinity is NaN):
    // with one such value anywhere in the layer the result must still be the reference's.
    it('mergeIntoNeighbours with an infinite or NaN value', async () => {
      const k = await kernelsFor(engine);
      await fc.assert(
        fc.asyncProperty(neighbourCases[0]!.cases.filter((c) => c.K > 0 && c.K < c.L), fc.constantFrom(NaN, Infinity, -Infinity), fc.nat(), async ({ H, L, D, seed, K, window }, special, at) => {
          const r = rng(seed);
          const base = randomLayer(H, L, D, r);
          const p = randomNeighbourPlan(H, L, K, window, r);
          // In a source's value when there is one (where spreading it matters), else anywhere.
          const sources = p.source.data.length;
          const i = sources > 0 ? at % sources : 0;
          const slot = sources > 0 ? Math.floor(i / (sources / H)) * L + p.source.data[i]! : at % (H * L);
          (base.values.data as Float32Array)[slot * D + (at % D)] = special;
          const merge: LayerOp = (kk, l, [keep, source, targetStart, targetCount, gate]) => kk.mergeIntoNeighbours(l, { keep: keep!, source: source!, targetStart: targetStart!, targetCount: targetCount!, gate: gate! });
          await expectLayerOpMatch(k, base, [p.keep, p.source, p.targetStart, p.targetCount, p.gate], merge, `mergeIntoNeighbours, a ${special} value`);
        }),
        { numRuns: 60 },
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
