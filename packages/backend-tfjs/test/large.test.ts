import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { hostTensor, type HostLayer, type HostTensor } from '@kvfold/core';
import * as tf from '@tensorflow/tfjs-core';
import { observe } from '../src/kernels/observe.js';
import {
  ENGINES,
  expectClose,
  expectLayerClose,
  kernelsFor,
  layerHost,
  randInt,
  randomF32,
  randomLayer,
  randomNeighbourPlan,
  randomSegmentPlan,
  ref,
  rng,
  upload,
} from './helpers.js';

/** Fixed cases spanning the required ranges: 1 and 64 kv heads, lengths 1 and 8192, head dims 16 and 256. */
const CASES = [
  { H: 64, L: 1, D: 256 },
  { H: 1, L: 8192, D: 256 },
  { H: 64, L: 8192, D: 16 },
  { H: 1, L: 1, D: 16 },
] as const;

/** Run every kernel of one case on one engine and compare with the reference. */
async function checkCase(engine: 'wasm' | 'cpu', H: number, L: number, D: number): Promise<void> {
  const k = await kernelsFor(engine);
  const r = rng(H * 100_003 + L * 31 + D);
  const base: HostLayer = randomLayer(H, L, D, r);
  const a = upload(k, base);
  const b = upload(ref, base);
  const before = tf.memory().numTensors;
  const owned: tf.Tensor[] = [];
  const put = (t: HostTensor): tf.Tensor => {
    const x = k.fromHost(t);
    owned.push(x);
    return x;
  };

  const kk = Math.max(1, Math.floor(L / 2));
  const top = k.topK(a.scores, kk, 0, L);
  owned.push(top);
  expectClose(await k.toHost(top), ref.topK(b.scores, kk, 0, L), 'topK');
  const index = ref.topK(b.scores, kk, 0, L);
  const g = k.gather(a, put(index));
  owned.push(g.keys, g.values, g.positions, g.counts, g.scores);
  expectLayerClose(await layerHost(k, g), await layerHost(ref, ref.gather(b, index)), 'gather');

  const cos = k.adjacentCosine(a.keys);
  owned.push(cos);
  expectClose(await k.toHost(cos), ref.adjacentCosine(b.keys), 'adjacentCosine');

  const sp = randomSegmentPlan(H, L, r, 0.2, 16);
  const merged = k.mergeSegments(a, { segment: put(sp.segment), pivot: put(sp.pivot), sigma: put(sp.sigma), valueScale: 'count' });
  owned.push(merged.keys, merged.values, merged.positions, merged.counts, merged.scores);
  expectLayerClose(await layerHost(k, merged), await layerHost(ref, ref.mergeSegments(b, { ...sp, valueScale: 'count' })), 'mergeSegments');

  const np = randomNeighbourPlan(H, L, Math.ceil(L / 2), 32, r);
  const cam = k.mergeIntoNeighbours(a, { keep: put(np.keep), source: put(np.source), targetStart: put(np.targetStart), targetCount: put(np.targetCount), gate: put(np.gate) });
  owned.push(cam.keys, cam.values, cam.positions, cam.counts, cam.scores);
  expectLayerClose(await layerHost(k, cam), await layerHost(ref, ref.mergeIntoNeighbours(b, np)), 'mergeIntoNeighbours');

  // 64 queries in 2 GQA groups, at positions from the middle to past the end of the cache.
  const n = 64;
  const q = randomF32([H * 2, n, D], r);
  const last = base.positions.data[L - 1]!;
  const qp = hostTensor('int32', [n], Array.from({ length: n }, (_, t) => Math.floor((last * (t + n)) / (2 * n - 1))));
  const obs = k.observe(a, put(q), put(qp), { proportional: true });
  owned.push(obs.sums, obs.last);
  const want = ref.observe(b, q, qp, { proportional: true });
  expectClose(await k.toHost(obs.sums), want.sums, 'observe sums');
  expectClose(await k.toHost(obs.last), want.last, 'observe last');

  k.dispose(...owned);
  expect(tf.memory().numTensors).toBe(before);
  k.dispose(a.keys, a.values, a.positions, a.counts, a.scores);
}

for (const engine of ENGINES) {
  describe(`tfjs ${engine}: large fixed cases equal the reference`, () => {
    for (const { H, L, D } of CASES) {
      it(`${H} kv heads x ${L} slots x ${D} dims`, async () => {
        await checkCase(engine, H, L, D);
      });
    }

    it('observe over a long prefill: 1,024 queries x 8,192 slots (chunked, two-level sums)', async () => {
      const k = await kernelsFor(engine);
      const r = rng(7);
      const L = 8192;
      const n = 1024;
      const base = randomLayer(1, L, 16, r);
      const q = randomF32([1, n, 16], r);
      const qp = hostTensor('int32', [n], Array.from({ length: n }, (_, t) => base.positions.data[L - n + t]!));
      const a = upload(k, base);
      const [tq, tp] = [k.fromHost(q), k.fromHost(qp)];
      const out = k.observe(a, tq, tp);
      const want = ref.observe(upload(ref, base), q, qp);
      expectClose(await k.toHost(out.sums), want.sums, 'observe sums');
      expectClose(await k.toHost(out.last), want.last, 'observe last');
      k.dispose(tq, tp, out.sums, out.last, a.keys, a.values, a.positions, a.counts, a.scores);
    });

    it('observe gives the same result whatever the chunking (block down to one query row)', async () => {
      const k = await kernelsFor(engine);
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 1, max: 64 }), fc.integer(), async (block, seed) => {
          const r = rng(seed);
          const H = randInt(r, 1, 2);
          const L = randInt(r, 1, 9);
          const n = randInt(r, 1, 6);
          const base = randomLayer(H, L, 4, r);
          const q = randomF32([H * 2, n, 4], r);
          const qp = hostTensor('int32', [n], Array.from({ length: n }, () => randInt(r, 0, base.positions.data[L - 1]!)));
          const a = upload(k, base);
          const [tq, tp] = [k.fromHost(q), k.fromHost(qp)];
          // The kernel function itself, to choose the block; the kernels object made this engine current.
          k.describe();
          const out = observe(a, tq, tp, { groupReduction: 'max' }, block);
          const want = ref.observe(upload(ref, base), q, qp, { groupReduction: 'max' });
          expectClose(await k.toHost(out.sums), want.sums, `sums, block ${block}`);
          expectClose(await k.toHost(out.last), want.last, `last, block ${block}`);
          k.dispose(tq, tp, out.sums, out.last, a.keys, a.values, a.positions, a.counts, a.scores);
        }),
        { numRuns: 20 },
      );
    });
  });
}
