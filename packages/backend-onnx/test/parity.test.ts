import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fc from 'fast-check';
import { hostTensor, layerFromHost, type GroupReduction, type HostTensor, type KVKernels, type LayerCache } from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { createOnnxKernels, defaultNativeDir, readManifest, type OnnxKernels, type OnnxTensor } from '../src/index.js';
import { loadAddon, NativeSessionFactory } from '../src/session.js';
import { adjacentCosineModel } from '../src/kernels/adjacentCosine.js';
import { expectClose, expectLayerClose, layerHost, nativeBuilt, randInt, randomF32, randomLayer, rng, variants } from './helpers.js';
import { camNeighbourPlan, randomNeighbourPlan, randomSegmentPlan, uploadNeighbourPlan, uploadSegmentPlan } from '@kvfold/testkit';

/** A random segment plan with a random value scale. */
const segmentPlan = (H: number, L: number, r: () => number) => ({ ...randomSegmentPlan(H, L, r), valueScale: r() < 0.5 ? ('count' as const) : ('none' as const) });
/** A random CaM plan: any number of kept slots, and sources among some of the others (not necessarily all). */
function neighbourPlan(H: number, L: number, r: () => number) {
  const K = randInt(r, 0, L);
  return randomNeighbourPlan(H, L, K, L, r, randInt(r, 0, L - K));
}

/** A CaM-shaped plan of random size (testkit's camNeighbourPlan): the native kernel's one-sweep path, or with `mixed` also its general one. */
function camPlan(H: number, L: number, r: () => number, mixed: boolean) {
  const K = randInt(r, 0, L);
  return camNeighbourPlan(H, L, K, randInt(r, 0, L - K), randInt(r, 1, 4), r, mixed);
}

const ref = createReferenceKernels();
const RUNS = Number(process.env.KVFOLD_RUNS ?? 40);
const shape = fc.record({ H: fc.integer({ min: 1, max: 3 }), L: fc.integer({ min: 0, max: 9 }), D: fc.integer({ min: 1, max: 6 }), seed: fc.integer() });

/** The same layer on both backends. */
function both(k: OnnxKernels, H: number, L: number, D: number, r: () => number, ties = false): [LayerCache<OnnxTensor>, LayerCache<HostTensor>] {
  const host = randomLayer(H, L, D, r, ties);
  return [layerFromHost(k, host), layerFromHost(ref, host)];
}

async function sameTensor(k: KVKernels<OnnxTensor>, a: OnnxTensor, e: HostTensor, what: string): Promise<void> {
  expectClose(await k.toHost(a), await ref.toHost(e), what);
}

/** mergeSegments with plan `p` on both backends' copies of one layer gives the same layer. */
async function expectSegmentsMatch(k: OnnxKernels, ol: LayerCache<OnnxTensor>, rl: LayerCache<HostTensor>, p: ReturnType<typeof segmentPlan>, what: string): Promise<void> {
  const out = k.mergeSegments(ol, uploadSegmentPlan(k, p, p.valueScale));
  expectLayerClose(await layerHost(k, out), await layerHost(ref, ref.mergeSegments(rl, p)), what);
}

/** mergeIntoNeighbours with plan `p` on both backends' copies of one layer gives the same layer. */
async function expectNeighboursMatch(k: OnnxKernels, ol: LayerCache<OnnxTensor>, rl: LayerCache<HostTensor>, p: ReturnType<typeof neighbourPlan>, what: string): Promise<void> {
  const plan = uploadNeighbourPlan(k, p);
  expectLayerClose(await layerHost(k, k.mergeIntoNeighbours(ol, plan)), await layerHost(ref, ref.mergeIntoNeighbours(rl, p)), what);
}

if (!nativeBuilt) {
  console.warn('[backend-onnx tests] native ai.kvfold kernels are not built: native parity is skipped (run `pnpm --filter @kvfold/backend-onnx build:native`)');
}

for (const variant of variants()) {
  describe(`onnx parity with reference: ${variant.name}`, () => {
    let k: OnnxKernels;
    beforeAll(() => {
      k = variant.make();
    });
    afterAll(() => k.release());

    it('append', async () => {
      await fc.assert(
        fc.asyncProperty(shape, fc.integer({ min: 0, max: 3 }), async ({ H, L, D, seed }, n) => {
          const r = rng(seed);
          const [ol, rl] = both(k, H, L, D, r);
          const nk = randomF32([H, n, D], r);
          const nv = randomF32([H, n, D], r);
          const np = hostTensor('int32', [H, n], Int32Array.from({ length: H * n }, (_, i) => 100 + i));
          const out = k.append(ol, k.fromHost(nk), k.fromHost(nv), k.fromHost(np));
          expectLayerClose(await layerHost(k, out), await layerHost(ref, ref.append(rl, nk, nv, np)), 'append');
        }),
        { numRuns: RUNS },
      );
    });

    it('accumulate, topK and the fused accumulateTopK (ties included)', async () => {
      await fc.assert(
        fc.asyncProperty(shape, fc.boolean(), async ({ H, L, seed }, ties) => {
          const r = rng(seed);
          const [ol, rl] = both(k, H, L, 1, r, ties);
          const att = hostTensor('float32', [H, L], Float32Array.from({ length: H * L }, () => (ties ? randInt(r, 0, 2) / 4 : r())));
          const from = randInt(r, 0, L);
          const to = randInt(r, from, L);
          const kk = randInt(r, 0, to - from);
          await sameTensor(k, k.accumulate(ol.scores, k.fromHost(att)), ref.accumulate(rl.scores, att), 'accumulate');
          await sameTensor(k, k.topK(ol.scores, kk, from, to), ref.topK(rl.scores, kk, from, to), `topK k=${kk} [${from}, ${to})`);
          const fused = k.accumulateTopK(ol.scores, k.fromHost(att), kk, from, to);
          const acc = ref.accumulate(rl.scores, att);
          await sameTensor(k, fused.scores, acc, 'accumulateTopK scores');
          await sameTensor(k, fused.index, ref.topK(acc, kk, from, to), 'accumulateTopK index');
        }),
        { numRuns: RUNS },
      );
    });

    it('topK over special values (NaN payloads, -0 and 0, infinities, subnormals, ties) picks the reference set', async () => {
      const specials = [NaN, -NaN, Infinity, -Infinity, 0, -0, 1e-45, -1e-45, 1, -1, 0.5, 3.4e38, -3.4e38];
      const nanPayload = new Float32Array(new Uint32Array([0x7fc00001, 0xffa00000]).buffer);
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 300 }), fc.integer(), async (H, L, seed) => {
          const r = rng(seed);
          const data = Float32Array.from({ length: H * L }, () => (r() < 0.1 ? nanPayload[randInt(r, 0, 1)]! : specials[randInt(r, 0, specials.length - 1)]!));
          const s = hostTensor('float32', [H, L], data);
          const from = randInt(r, 0, L);
          const to = randInt(r, from, L);
          const kk = randInt(r, 0, to - from);
          await sameTensor(k, k.topK(k.fromHost(s), kk, from, to), ref.topK(s, kk, from, to), `topK k=${kk} [${from}, ${to})`);
        }),
        { numRuns: RUNS },
      );
    });

    it('linkSegments numbers the runs and picks their pivots as the reference does (NaN payloads, -0 and 0, infinities, ties)', async () => {
      const specials = [NaN, -NaN, Infinity, -Infinity, 0, -0, 1, 1, 0.5];
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 200 }), fc.integer(), async (H, L, seed) => {
          const r = rng(seed);
          const scores = hostTensor('float32', [H, L], Float32Array.from({ length: H * L }, () => specials[randInt(r, 0, specials.length - 1)]!));
          const slots = Array.from({ length: Math.max(0, L - 1) }, (_, i) => i);
          const C = randInt(r, 0, slots.length);
          // Each head merges C links drawn at random, ascending.
          const links = hostTensor('int32', [H, C], Array.from({ length: H }, () => slots.map((x) => [r(), x] as const).sort((a, b) => a[0] - b[0]).slice(0, C).map(([, x]) => x).sort((a, b) => a - b)).flat());
          const got = k.linkSegments(k.fromHost(links), k.fromHost(scores));
          const want = ref.linkSegments(ref.fromHost(links), ref.fromHost(scores));
          await sameTensor(k, got.segment, want.segment, `linkSegments segment H=${H} L=${L} C=${C}`);
          await sameTensor(k, got.pivot, want.pivot, `linkSegments pivot H=${H} L=${L} C=${C}`);
        }),
        { numRuns: RUNS },
      );
    });

    it("mergeSimilar (the chain in one session run) gives the reference's layer, eligible links and lowest cosine", async () => {
      const cases = fc.record({
        H: fc.integer({ min: 1, max: 4 }),
        L: fc.integer({ min: 0, max: 40 }),
        D: fc.integer({ min: 1, max: 12 }),
        P: fc.integer({ min: 0, max: 6 }),
        share: fc.double({ min: 0, max: 1, noNaN: true }),
        minSimilarity: fc.constantFrom(-1, -0.25, 0.3, 0.7),
        sigma: fc.double({ min: 0.1, max: 3, noNaN: true }),
        byCount: fc.boolean(),
        seed: fc.integer(),
      });
      await fc.assert(
        fc.asyncProperty(cases, async ({ H, L, D, P, share, minSimilarity, sigma, byCount, seed }) => {
          const r = rng(seed);
          const [ol, rl] = both(k, H, L, D, r);
          const slots = L === 0 ? 0 : P;
          const protect = hostTensor('int32', [H, slots], Array.from({ length: H * slots }, () => randInt(r, 0, L - 1)));
          const plan = { count: Math.floor(share * Math.max(0, L - 1)), minSimilarity, sigma, valueScale: byCount ? ('count' as const) : ('none' as const) };
          const what = `mergeSimilar H=${H} L=${L} D=${D} P=${slots} count=${plan.count} floor=${minSimilarity}`;
          const got = k.mergeSimilar(ol, { ...plan, protect: k.fromHost(protect) });
          const want = ref.mergeSimilar(rl, { ...plan, protect: ref.fromHost(protect) });
          expectLayerClose(await layerHost(k, got.layer), await layerHost(ref, want.layer), what);
          await sameTensor(k, got.eligible, want.eligible, `${what}: eligible`);
          await sameTensor(k, got.lowest, want.lowest, `${what}: lowest`);
        }),
        { numRuns: RUNS },
      );
    });

    it('topK ranks NaN as -Infinity and breaks ties by slot', async () => {
      const s = hostTensor('float32', [2, 5], [0.5, NaN, 0.5, -Infinity, 0.1, NaN, NaN, 1, NaN, -Infinity]);
      for (const kk of [1, 2, 3, 4, 5]) await sameTensor(k, k.topK(k.fromHost(s), kk, 0, 5), ref.topK(s, kk, 0, 5), `topK k=${kk}`);
      expect(Array.from((await k.toHost(k.topK(k.fromHost(s), 3, 0, 5))).data)).toEqual([0, 2, 4, 0, 1, 2]);
    });

    it('gather (duplicates and any order)', async () => {
      await fc.assert(
        fc.asyncProperty(shape, fc.integer({ min: 0, max: 8 }), async ({ H, L, D, seed }, n) => {
          const r = rng(seed);
          const [ol, rl] = both(k, H, L, D, r);
          const m = L === 0 ? 0 : n;
          const idx = hostTensor('int32', [H, m], Int32Array.from({ length: H * m }, () => randInt(r, 0, L - 1)));
          expectLayerClose(await layerHost(k, k.gather(ol, k.fromHost(idx))), await layerHost(ref, ref.gather(rl, idx)), 'gather');
        }),
        { numRuns: RUNS },
      );
    });

    it('adjacentCosine and keyNorms (zero, parallel, tiny and huge keys included)', async () => {
      await fc.assert(
        fc.asyncProperty(shape, async ({ H, L, D, seed }) => {
          const r = rng(seed);
          const keys = randomF32([H, L, D], r);
          const kd = keys.data as Float32Array;
          for (let i = 0; i < H * L; i++) {
            const x = r();
            if (x < 0.15) kd.fill(0, i * D, (i + 1) * D);
            else if (x < 0.3 && i > 0) for (let d = 0; d < D; d++) kd[i * D + d] = 3 * kd[(i - 1) * D + d]!;
            // Rows whose float32 squares under- or overflow: the float64 fallback of the lane sums.
            else if (x < 0.4) for (let d = 0; d < D; d++) kd[i * D + d] = kd[i * D + d]! * (x < 0.35 ? 1e-30 : 1e25);
          }
          const cos = k.adjacentCosine(k.fromHost(keys));
          await sameTensor(k, cos, ref.adjacentCosine(keys), 'adjacentCosine');
          // The native CPU op sums the reference's float32 lanes: the same bits, so KVMerger plans the same.
          if (variant.name === 'native CPU kernels') expect(Array.from((await k.toHost(cos)).data)).toEqual(Array.from(ref.adjacentCosine(keys).data));
          await sameTensor(k, k.keyNorms(k.fromHost(keys)), ref.keyNorms(keys), 'keyNorms');
        }),
        { numRuns: RUNS },
      );
    });

    it.each([
      {
        name: 'mergeSegments (count and none scaling, dropped slots)',
        check: async (ol: LayerCache<OnnxTensor>, rl: LayerCache<HostTensor>, H: number, L: number, r: () => number) => {
          const p = segmentPlan(H, L, r);
          await expectSegmentsMatch(k, ol, rl, p, `mergeSegments ${p.valueScale}`);
        },
      },
      {
        name: 'mergeIntoNeighbours (shared targets, zero counts and gates)',
        check: (ol: LayerCache<OnnxTensor>, rl: LayerCache<HostTensor>, H: number, L: number, r: () => number) => expectNeighboursMatch(k, ol, rl, neighbourPlan(H, L, r), 'mergeIntoNeighbours'),
      },
      {
        name: 'mergeIntoNeighbours, CaM-shaped windows (ascending starts, each reaching its block end; some narrower)',
        check: async (ol: LayerCache<OnnxTensor>, rl: LayerCache<HostTensor>, H: number, L: number, r: () => number) => {
          await expectNeighboursMatch(k, ol, rl, camPlan(H, L, r, false), 'mergeIntoNeighbours CaM-shaped');
          await expectNeighboursMatch(k, ol, rl, camPlan(H, L, r, true), 'mergeIntoNeighbours CaM-shaped, mixed');
        },
      },
    ])('$name', async ({ check }) => {
      await fc.assert(
        fc.asyncProperty(shape, async ({ H, L, D, seed }) => {
          const r = rng(seed);
          const [ol, rl] = both(k, H, L, D, r);
          await check(ol, rl, H, L, r);
        }),
        { numRuns: RUNS },
      );
    });

    it('observe (GQA groups, every reduction, proportional, queries that see nothing)', async () => {
      const reductions: GroupReduction[] = ['mean', 'max', 'sum'];
      await fc.assert(
        fc.asyncProperty(shape, fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 4 }), async ({ H, L, D, seed }, G, n) => {
          const r = rng(seed);
          const [ol, rl] = both(k, H, L, D, r);
          const q = randomF32([H * G, n, D], r);
          // Positions run from 0..~3L: some queries see every slot, some only a prefix, some none.
          const qp = hostTensor('int32', [n], Int32Array.from({ length: n }, () => randInt(r, -1, 3 * L)));
          const options = { groupReduction: reductions[randInt(r, 0, 2)]!, proportional: r() < 0.5, ...(r() < 0.5 ? { scale: 0.1 + r() } : {}) };
          const o = k.observe(ol, k.fromHost(q), k.fromHost(qp), options);
          const e = ref.observe(rl, q, qp, options);
          await sameTensor(k, o.attention, e.attention, `observe sums ${JSON.stringify(options)}`);
          await sameTensor(k, o.lastAttention, e.lastAttention, `observe last ${JSON.stringify(options)}`);
        }),
        { numRuns: RUNS },
      );
    });

    it('allFinite', async () => {
      await fc.assert(
        fc.asyncProperty(shape, fc.constantFrom(0, NaN, Infinity, -Infinity), async ({ H, L, D, seed }, bad) => {
          const r = rng(seed);
          const t = randomF32([H, L, D], r);
          if (t.data.length > 0 && bad !== 0) (t.data as Float32Array)[randInt(r, 0, t.data.length - 1)] = bad;
          expect(await k.allFinite(k.fromHost(t))).toBe(await ref.allFinite(t));
        }),
        { numRuns: RUNS },
      );
      expect(await k.allFinite(k.fromHost(hostTensor('int32', [2], [1, 2])))).toBe(true);
    });

    it('medium random shapes: every kernel (H <= 4, L <= 96, D <= 48)', async () => {
      const medium = fc.record({ H: fc.integer({ min: 1, max: 4 }), L: fc.integer({ min: 10, max: 96 }), D: fc.integer({ min: 1, max: 48 }), seed: fc.integer() });
      await fc.assert(
        fc.asyncProperty(medium, fc.integer({ min: 1, max: 4 }), async ({ H, L, D, seed }, G) => {
          const r = rng(seed);
          const [ol, rl] = both(k, H, L, D, r, r() < 0.3);
          const tag = `H=${H} L=${L} D=${D}`;
          await sameTensor(k, k.adjacentCosine(ol.keys), ref.adjacentCosine(rl.keys), `adjacentCosine ${tag}`);
          const from = randInt(r, 0, L);
          const to = randInt(r, from, L);
          const kk = randInt(r, 0, to - from);
          await sameTensor(k, k.topK(ol.scores, kk, from, to), ref.topK(rl.scores, kk, from, to), `topK ${tag}`);
          const idx = ref.topK(rl.scores, randInt(r, 0, L), 0, L);
          expectLayerClose(await layerHost(k, k.gather(ol, k.fromHost(idx))), await layerHost(ref, ref.gather(rl, idx)), `gather ${tag}`);
          const sp = segmentPlan(H, L, r);
          await expectSegmentsMatch(k, ol, rl, sp, `mergeSegments ${sp.valueScale} ${tag}`);
          await expectNeighboursMatch(k, ol, rl, neighbourPlan(H, L, r), `mergeIntoNeighbours ${tag}`);
          const n = randInt(r, 1, 12);
          const q = randomF32([H * G, n, D], r);
          const qp = hostTensor('int32', [n], Int32Array.from({ length: n }, () => randInt(r, -1, 3 * L)));
          const options = { groupReduction: (['mean', 'max', 'sum'] as const)[randInt(r, 0, 2)]!, proportional: r() < 0.5 };
          const o = k.observe(ol, k.fromHost(q), k.fromHost(qp), options);
          const e = ref.observe(rl, q, qp, options);
          await sameTensor(k, o.attention, e.attention, `observe sums ${tag} G=${G} n=${n} ${JSON.stringify(options)}`);
          await sameTensor(k, o.lastAttention, e.lastAttention, `observe last ${tag} G=${G} n=${n} ${JSON.stringify(options)}`);
        }),
        { numRuns: Math.max(4, Math.ceil(RUNS / 2)) },
      );
    });

    it('large shapes: every kernel at H=8, L=512, D=64', async () => {
      const r = rng(7);
      const [H, L, D] = [8, 512, 64];
      const [ol, rl] = both(k, H, L, D, r);
      await sameTensor(k, k.adjacentCosine(ol.keys), ref.adjacentCosine(rl.keys), 'adjacentCosine');
      await sameTensor(k, k.topK(ol.scores, 200, 16, 480), ref.topK(rl.scores, 200, 16, 480), 'topK');
      const idx = ref.topK(rl.scores, 256, 0, L);
      expectLayerClose(await layerHost(k, k.gather(ol, k.fromHost(idx))), await layerHost(ref, ref.gather(rl, idx)), 'gather');
      await expectSegmentsMatch(k, ol, rl, { ...segmentPlan(H, L, r), valueScale: 'count' }, 'mergeSegments');
      await expectNeighboursMatch(k, ol, rl, neighbourPlan(H, L, r), 'mergeIntoNeighbours');
      for (let i = 0; i < 4; i++) await expectNeighboursMatch(k, ol, rl, camPlan(H, L, r, i % 2 === 1), `mergeIntoNeighbours CaM-shaped ${i}`);
      const q = randomF32([2 * H, 16, D], r);
      const qp = hostTensor('int32', [16], Int32Array.from({ length: 16 }, (_, i) => 100 * i + 50));
      for (const groupReduction of ['mean', 'max'] as const) {
        const o = k.observe(ol, k.fromHost(q), k.fromHost(qp), { groupReduction, proportional: true });
        const e = ref.observe(rl, q, qp, { groupReduction, proportional: true });
        await sameTensor(k, o.attention, e.attention, `observe sums ${groupReduction}`);
        await sameTensor(k, o.lastAttention, e.lastAttention, `observe last ${groupReduction}`);
      }
    });
  });
}

describe('onnx observe split into blocks (function bodies, bounded memory)', () => {
  it('equals one block for every reduction', async () => {
    // A 64-element block forces the per-query-head, per-query-block path on tiny shapes.
    const k = createOnnxKernels({ native: 'off', threads: 1, observeBlock: 64 });
    await fc.assert(
      fc.asyncProperty(shape, fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 12 }), fc.constantFrom<GroupReduction>('mean', 'max', 'sum'), async ({ H, L, D, seed }, G, n, groupReduction) => {
        const r = rng(seed);
        const host = randomLayer(H, L, D, r);
        const q = randomF32([H * G, n, D], r);
        const qp = hostTensor('int32', [n], Int32Array.from({ length: n }, () => randInt(r, -1, 3 * L)));
        const o = k.observe(layerFromHost(k, host), k.fromHost(q), k.fromHost(qp), { groupReduction });
        const e = ref.observe(layerFromHost(ref, host), q, qp, { groupReduction });
        expectClose(await k.toHost(o.attention), e.attention, 'blocked observe sums');
        expectClose(await k.toHost(o.lastAttention), e.lastAttention, 'blocked observe last');
      }),
      { numRuns: RUNS },
    );
    k.release();
  });
});

const manifest = nativeBuilt ? readManifest(defaultNativeDir()) : undefined;

describe.skipIf(!nativeBuilt)('onnx native kernels (skipped unless `build:native` ran)', () => {
  it.skipIf(!manifest?.cudaLibrary)('the CUDA library (built when nvcc exists) loads here and serves its CPU kernels', async () => {
    const dir = defaultNativeDir();
    const addon = loadAddon(dir, manifest!);
    const lib = join(dir, manifest!.cudaLibrary!);
    const f = new NativeSessionFactory(addon, lib, { executionProvider: 'cpu', threads: 1, deviceId: 0 });
    const s = f.create('adjacentCosine', adjacentCosineModel());
    const keys = randomF32([2, 7, 5], rng(4));
    const before = Math.max(0, f.nativeKernelCalls());
    const [cos] = s.run({ keys: new ort.Tensor('float32', keys.data as Float32Array, [2, 7, 5]) }, ['cos']);
    expect(f.nativeKernelCalls() - before).toBe(1);
    expectClose(hostTensor('float32', [...cos!.dims], cos!.data as Float32Array), ref.adjacentCosine(keys), 'adjacentCosine via the CUDA library');
    s.release();
  });

  it('ORT runs the registered ai.kvfold kernels, not the function bodies', async () => {
    const k = createOnnxKernels({ native: 'require', threads: 1 });
    expect(k.describe()).toContain('native CPU kernels; observe: function body');
    expect(k.info.kernelPath).toBe('native-cpu');
    expect(k.info.observePath).toBe('function-bodies');
    const before = k.nativeKernelCalls()!;
    const host = randomLayer(2, 6, 4, rng(1));
    const l = layerFromHost(k, host);
    k.adjacentCosine(l.keys);
    k.topK(l.scores, 2, 0, 6);
    expect(k.nativeKernelCalls()! - before).toBe(2);
    // observe runs its function body by default on CPU: no native call...
    const q = k.fromHost(randomF32([4, 3, 4], rng(2)));
    const qp = k.fromHost(hostTensor('int32', [3], [3, 4, 9]));
    k.observe(l, q, qp);
    expect(k.nativeKernelCalls()! - before).toBe(2);
    // ...unless asked for.
    const nk = createOnnxKernels({ native: 'require', threads: 1, observeKernel: 'native' });
    const c0 = nk.nativeKernelCalls()!;
    nk.observe(layerFromHost(nk, host), nk.fromHost(randomF32([4, 3, 4], rng(2))), nk.fromHost(hostTensor('int32', [3], [3, 4, 9])));
    expect(nk.nativeKernelCalls()! - c0).toBe(1);
    nk.release();
    k.release();
    const bodies = createOnnxKernels({ native: 'off' });
    expect(bodies.nativeKernelCalls()).toBeUndefined();
    expect(bodies.describe()).toContain('function bodies');
  });
});
