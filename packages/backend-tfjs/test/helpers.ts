import { createReferenceKernels } from '@kvfold/backend-reference';
import fc from 'fast-check';
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import { hostTensor, type HostLayer, type HostTensor, type KVKernels, type LayerCache } from '@kvfold/core';
import { expectClose, expectLayerClose, layerHost, mulberry32 as rng, randInt, randomF32, randomLayer, randomNeighbourPlan, randomSegmentPlan, upload } from '@kvfold/testkit';
import { createTfjsKernels, type TfjsBackendOptions, type TfjsKernels } from '../src/index.js';

/** The reference kernels: ground truth. */
export const ref = createReferenceKernels();

/**
 * Configurations every parity test runs on (both engines ship with the package): the wasm engine with
 * kvfold's wasm kernels (the default), the wasm engine with tfjs op programs only (`kernels: 'tfjs'`), and cpu.
 */
export const ENGINES = ['wasm', 'wasm(kernels=tfjs)', 'cpu'] as const;

/** One of {@link ENGINES}. */
export type EngineCase = (typeof ENGINES)[number];

/** The backend options of a configuration. */
export function optionsFor(c: EngineCase): TfjsBackendOptions {
  return c === 'wasm(kernels=tfjs)' ? { engine: 'wasm', kernels: 'tfjs' } : { engine: c };
}

const cache = new Map<string, Promise<TfjsKernels>>();
/** Kernels for a configuration, created once per test file. */
export function kernelsFor(engine: EngineCase): Promise<TfjsKernels> {
  let k = cache.get(engine);
  if (!k) {
    k = createTfjsKernels(optionsFor(engine));
    cache.set(engine, k);
  }
  return k;
}

export {
  mulberry32 as rng,
  randInt,
  randomLayer,
  randomF32,
  randomQueries,
  expectClose,
  layerHost,
  expectLayerClose,
  upload,
  shuffled,
  randomSegmentPlan,
  randomNeighbourPlan,
  type HostSegmentPlan,
  type HostNeighbourPlan,
} from '@kvfold/testkit';

/**
 * Run every kernel once on a random `H x L x D` layer and compare with the reference (topK, gather,
 * adjacentCosine, mergeSegments, mergeIntoNeighbours, observe with 64 queries in 2 GQA groups); checks
 * that no tensor is left behind.
 */
export async function checkAllKernels(k: KVKernels<tf.Tensor>, H: number, L: number, D: number): Promise<void> {
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
  const norms = k.keyNorms(a.keys);
  owned.push(norms);
  expectClose(await k.toHost(norms), ref.keyNorms(b.keys), 'keyNorms');

  const sp = randomSegmentPlan(H, L, r, 0.2, 16);
  const merged = k.mergeSegments(a, { segment: put(sp.segment), pivot: put(sp.pivot), sigma: put(sp.sigma), valueScale: 'count' });
  owned.push(merged.keys, merged.values, merged.positions, merged.counts, merged.scores);
  expectLayerClose(await layerHost(k, merged), await layerHost(ref, ref.mergeSegments(b, { ...sp, valueScale: 'count' })), 'mergeSegments');

  const np = randomNeighbourPlan(H, L, Math.ceil(L / 2), 32, r);
  const cam = k.mergeIntoNeighbours(a, { keep: put(np.keep), source: put(np.source), targetStart: put(np.targetStart), targetCount: put(np.targetCount), gate: put(np.gate) });
  owned.push(cam.keys, cam.values, cam.positions, cam.counts, cam.scores);
  expectLayerClose(await layerHost(k, cam), await layerHost(ref, ref.mergeIntoNeighbours(b, np)), 'mergeIntoNeighbours');

  // Up to 64 queries in 2 GQA groups, fewer on the largest caches (8 at 2 M elements, where the cpu
  // engine's matMul alone would take seconds for 64; long query runs are the long-prefill test's job),
  // at positions from the middle to past the end of the cache.
  const n = Math.max(8, Math.min(64, Math.floor((1 << 24) / (H * L * D))));
  const q = randomF32([H * 2, n, D], r);
  const last = base.positions.data[L - 1]!;
  const qp = hostTensor('int32', [n], Array.from({ length: n }, (_, t) => Math.floor((last * (t + n)) / (2 * n - 1))));
  const obs = k.observe(a, put(q), put(qp), { proportional: true });
  owned.push(obs.attention, obs.lastAttention);
  const want = ref.observe(b, q, qp, { proportional: true });
  expectClose(await k.toHost(obs.attention), want.attention, 'observe sums');
  expectClose(await k.toHost(obs.lastAttention), want.lastAttention, 'observe last');

  k.dispose(...owned);
  if (tf.memory().numTensors !== before) throw new Error(`${tf.memory().numTensors - before} tensors left behind`);
  k.dispose(a.keys, a.values, a.positions, a.counts, a.scores);
}

/** The bytes of every field, so equality means bit-identical (signs of zeros and NaN payloads included). */
export function bits(t: HostTensor | HostLayer | LayerCache<HostTensor>): number[][] {
  const ts = 'keys' in t ? [t.keys, t.values, t.positions, t.counts, t.scores] : [t];
  return ts.map((x) => [...x.shape, ...new Uint8Array(x.data.buffer, x.data.byteOffset, x.data.byteLength)]);
}

/** One random case of every kernel kvfold runs in the wasm engine, on kernels `k`, as host results. */
export async function everyKernel<T>(k: KVKernels<T>, base: HostLayer, r: () => number): Promise<(HostTensor | HostLayer)[]> {
  const [H, L] = base.scores.shape as [number, number];
  const layer = upload(k, base);
  const owned: T[] = [];
  const put = (t: HostTensor): T => {
    const x = k.fromHost(t);
    owned.push(x);
    return x;
  };
  const n = randInt(r, 0, 2 * L);
  const index = put(hostTensor('int32', [H, n], Array.from({ length: H * n }, () => randInt(r, 0, L - 1))));
  const sp = randomSegmentPlan(H, L, r, 0.2, 4);
  const np = randomNeighbourPlan(H, L, randInt(r, 1, L), 4, r);
  const from = randInt(r, 0, L);
  const to = randInt(r, from, L);
  const top = randInt(r, 0, to - from);
  // A random ascending set of links for linkSegments.
  const slots = Array.from({ length: Math.max(0, L - 1) }, (_, i) => i).filter(() => r() < 0.5);
  const count = slots.length > 0 ? randInt(r, 0, slots.length) : 0;
  const chosen = Array.from({ length: H }, () => slots.slice(0, count)).flat();
  const linked = k.linkSegments(put(hostTensor('int32', [H, count], chosen)), layer.scores);
  // mergeSimilar on random protected slots (repeats allowed), counts, floors and bandwidths.
  const P = randInt(r, 0, Math.min(L, 6));
  const protect = put(hostTensor('int32', [H, P], Array.from({ length: H * P }, () => randInt(r, 0, L - 1))));
  const similar = k.mergeSimilar(layer, { protect, count: randInt(r, 0, Math.max(0, L - 1)), minSimilarity: r() * 1.5 - 1, sigma: 0.05 + 3 * r(), valueScale: r() < 0.5 ? 'count' : 'none' });
  const results: (T | LayerCache<T>)[] = [
    similar.layer,
    similar.lowest,
    similar.eligible,
    linked.segment,
    linked.pivot,
    k.topK(layer.scores, top, from, to),
    k.gather(layer, index),
    k.adjacentCosine(layer.keys),
    k.mergeSegments(layer, { segment: put(sp.segment), pivot: put(sp.pivot), sigma: put(sp.sigma), valueScale: 'count' }),
    k.mergeSegments(layer, { segment: put(sp.segment), pivot: put(sp.pivot), sigma: put(sp.sigma), valueScale: 'none' }),
    k.mergeIntoNeighbours(layer, { keep: put(np.keep), source: put(np.source), targetStart: put(np.targetStart), targetCount: put(np.targetCount), gate: put(np.gate) }),
  ];
  const out: (HostTensor | HostLayer)[] = [];
  for (const x of results) {
    if (typeof x === 'object' && x !== null && 'keys' in x) {
      out.push(await layerHost(k, x));
      k.dispose(x.keys, x.values, x.positions, x.counts, x.scores);
    } else {
      out.push(await k.toHost(x as T));
      k.dispose(x as T);
    }
  }
  k.dispose(layer.keys, layer.values, layer.positions, layer.counts, layer.scores, ...owned);
  return out;
}

/**
 * Property: on random layers of `H` in `[minHeads, maxHeads]` heads (up to 48 slots, head dims up to 19) and
 * random plans, every kernel of `k` that kvfold runs in the wasm engine gives the reference backend's bytes.
 */
export async function expectReferenceBits(k: KVKernels<tf.Tensor>, minHeads: number, maxHeads: number, numRuns: number): Promise<void> {
  const dims = fc.record({ H: fc.integer({ min: minHeads, max: maxHeads }), L: fc.integer({ min: 1, max: 48 }), D: fc.integer({ min: 1, max: 19 }), seed: fc.integer() });
  await fc.assert(
    fc.asyncProperty(dims, async ({ H, L, D, seed }) => {
      const base = randomLayer(H, L, D, rng(seed));
      const got = await everyKernel(k, base, rng(seed + 1));
      const want = await everyKernel(ref, base, rng(seed + 1));
      expect(got.map(bits)).toEqual(want.map(bits));
    }),
    { numRuns },
  );
}
