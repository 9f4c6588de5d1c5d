// The native CPU kernels run head by head on ORT's intra-op pool (ParallelFor in ort_ops.cc), each head on
// one thread with its own scratch, so a session with two intra-op threads must give the very bytes of a
// one-thread session (where ParallelFor runs inline), whatever the shape: odd head counts, one head, a few slots.
import { describe, expect, it, afterAll } from 'vitest';
import fc from 'fast-check';
import { hostTensor, layerFromHost, type HostTensor, type LayerCache } from '@kvfold/core';
import { randomNeighbourPlan, randomSegmentPlan, uploadNeighbourPlan, uploadSegmentPlan } from '@kvfold/testkit';
import { createOnnxKernels, type OnnxKernels, type OnnxTensor } from '../src/index.js';
import { nativeBuilt, randInt, randomF32, randomLayer, rng } from './helpers.js';

const RUNS = Number(process.env.KVFOLD_RUNS ?? 40);

/** The bytes of a host tensor, to compare results bit for bit (NaN payloads and -0 included). */
const bytesOf = (t: HostTensor): Uint8Array => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);

describe.skipIf(!nativeBuilt)('native CPU kernels: 2 intra-op threads give the bytes of 1 (skipped unless `build:native` ran)', () => {
  const one = nativeBuilt ? createOnnxKernels({ native: 'require', threads: 1, observeKernel: 'native' }) : undefined;
  const two = nativeBuilt ? createOnnxKernels({ native: 'require', threads: 2, observeKernel: 'native' }) : undefined;
  afterAll(() => {
    one?.release();
    two?.release();
  });

  /** Runs `f` on both backends and expects byte-identical host tensors. */
  async function same(what: string, f: (k: OnnxKernels) => OnnxTensor | OnnxTensor[]): Promise<void> {
    const [a, b] = [one!, two!].map((k) => [f(k)].flat());
    expect(a.length).toBe(b.length);
    for (const [i, t] of a.entries()) {
      const [x, y] = [await one!.toHost(t), await two!.toHost(b[i]!)];
      expect(y.shape, `${what} [${i}] shape`).toEqual(x.shape);
      expect(Buffer.compare(bytesOf(x), bytesOf(y)), `${what} [${i}] bytes`).toBe(0);
    }
  }

  /** Every output of a layer, in a fixed order. */
  const fields = (l: LayerCache<OnnxTensor>): OnnxTensor[] => [l.keys, l.values, l.positions, l.counts, l.scores];

  // Odd and even head counts around the two threads, H = 1 (ParallelFor skipped), L from 0.
  const shape = fc.record({ H: fc.integer({ min: 1, max: 9 }), L: fc.integer({ min: 0, max: 40 }), D: fc.integer({ min: 1, max: 24 }), seed: fc.integer() });

  it('every native kernel on random shapes', async () => {
    expect(one!.info.kernelPath).toBe('native-cpu');
    expect(two!.info.kernelPath).toBe('native-cpu');
    await fc.assert(
      fc.asyncProperty(shape, fc.boolean(), async ({ H, L, D, seed }, ties) => {
        const r = rng(seed);
        const host = randomLayer(H, L, D, r, ties);
        const layer = (k: OnnxKernels) => layerFromHost(k, host);
        const tag = `H=${H} L=${L} D=${D}`;
        await same(`adjacentCosine ${tag}`, (k) => k.adjacentCosine(layer(k).keys));
        const att = randomF32([H, L], r);
        const from = randInt(r, 0, L);
        const to = randInt(r, from, L);
        const kk = randInt(r, 0, to - from);
        await same(`topK ${tag}`, (k) => k.topK(layer(k).scores, kk, from, to));
        await same(`accumulateTopK ${tag}`, (k) => {
          const o = k.accumulateTopK(layer(k).scores, k.fromHost(att), kk, from, to);
          return [o.scores, o.index];
        });
        const m = L === 0 ? 0 : randInt(r, 0, L);
        const idx = hostTensor('int32', [H, m], Int32Array.from({ length: H * m }, () => randInt(r, 0, L - 1)));
        await same(`gather ${tag}`, (k) => fields(k.gather(layer(k), k.fromHost(idx))));
        const sp = randomSegmentPlan(H, L, r);
        const valueScale = r() < 0.5 ? ('count' as const) : ('none' as const);
        await same(`mergeSegments ${valueScale} ${tag}`, (k) =>
          fields(k.mergeSegments(layer(k), uploadSegmentPlan(k, sp, valueScale))),
        );
        const K = randInt(r, 0, L);
        const np = randomNeighbourPlan(H, L, K, L, r, randInt(r, 0, L - K));
        await same(`mergeIntoNeighbours K=${K} ${tag}`, (k) =>
          fields(k.mergeIntoNeighbours(layer(k), uploadNeighbourPlan(k, np))),
        );
        const G = randInt(r, 1, 3);
        const n = randInt(r, 1, 6);
        const q = randomF32([H * G, n, D], r);
        const qp = hostTensor('int32', [n], Int32Array.from({ length: n }, () => randInt(r, -1, 3 * L)));
        const groupReduction = (['mean', 'max', 'sum'] as const)[randInt(r, 0, 2)]!;
        const proportional = r() < 0.5;
        await same(`observe ${groupReduction} G=${G} n=${n} ${tag}`, (k) => {
          const o = k.observe(layer(k), k.fromHost(q), k.fromHost(qp), { groupReduction, proportional });
          return [o.attention, o.lastAttention];
        });
      }),
      { numRuns: RUNS },
    );
  });

  it('a policy-sized layer (33 heads x 300 slots x 64): gather and both merges', async () => {
    const r = rng(12);
    const [H, L, D] = [33, 300, 64];
    const host = randomLayer(H, L, D, r);
    const idx = hostTensor('int32', [H, 150], Int32Array.from({ length: H * 150 }, (_, i) => 2 * (i % 150)));
    await same('gather', (k) => fields(k.gather(layerFromHost(k, host), k.fromHost(idx))));
    const sp = randomSegmentPlan(H, L, r, 0.2, 4);
    await same('mergeSegments', (k) =>
      fields(k.mergeSegments(layerFromHost(k, host), uploadSegmentPlan(k, sp, 'count'))),
    );
    const np = randomNeighbourPlan(H, L, 150, 8, r);
    await same('mergeIntoNeighbours', (k) =>
      fields(k.mergeIntoNeighbours(layerFromHost(k, host), uploadNeighbourPlan(k, np))),
    );
    await same('adjacentCosine', (k) => k.adjacentCosine(layerFromHost(k, host).keys));
  });
});
