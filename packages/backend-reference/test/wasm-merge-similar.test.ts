// mergeSimilar: a hand-worked case on core's TypeScript reference and the wasm kernel, then the wasm kernel
// (one thread, and every call split over two and three threads) against the chain of kernels it fuses on the same
// backend (bit for bit: the same wasm code per head) and against core's float64 TypeScript (within 1e-5).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { HostTensor, LayerCache, SimilarMerge } from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { f32, i32, randomLayer, rng } from './util.js';

const wasmKernels = createReferenceKernels({ threads: 1 });
const jsKernels = createReferenceKernels({ kernels: 'js' });
const threaded = [createReferenceKernels({ threads: 2, threadMinBytes: 0 }), createReferenceKernels({ threads: 3, threadMinBytes: 0 })];
const onAll = [wasmKernels, ...threaded];

type K = ReturnType<typeof createReferenceKernels>;

interface Plan {
  readonly protect: number[];
  readonly P: number;
  readonly count: number;
  readonly minSimilarity: number;
  readonly sigma: number;
  readonly valueScale: 'count' | 'none';
}

/** The layer's arrays uploaded to `k` (in its heap, where its wasm kernels run; host arrays would take core's reference). */
function up(k: K, l: LayerCache<HostTensor>): LayerCache<HostTensor> {
  return { keys: k.fromHost(l.keys), values: k.fromHost(l.values), positions: k.fromHost(l.positions), counts: k.fromHost(l.counts), scores: k.fromHost(l.scores) };
}

function run(k: K, layer: LayerCache<HostTensor>, H: number, p: Plan): SimilarMerge<HostTensor> {
  return k.mergeSimilar(up(k, layer), { protect: k.fromHost(i32([H, p.P], p.protect)), count: p.count, minSimilarity: p.minSimilarity, sigma: p.sigma, valueScale: p.valueScale });
}

/** The kernels mergeSimilar fuses, called one after another on `k` (the masking on the host, as KVMerger did). */
function chain(k: K, host: LayerCache<HostTensor>, H: number, L: number, p: Plan): LayerCache<HostTensor> {
  const layer = up(k, host);
  const n1 = Math.max(0, L - 1);
  const cos = k.adjacentCosine(layer.keys).data;
  const ranked = new Float32Array(H * n1);
  const blocked = new Uint8Array(L);
  for (let h = 0; h < H; h++) {
    blocked.fill(0);
    for (let j = 0; j < p.P; j++) blocked[p.protect[h * p.P + j]!] = 1;
    for (let i = 0; i < n1; i++) {
      const c = cos[h * n1 + i]!;
      ranked[h * n1 + i] = blocked[i] === 0 && blocked[i + 1] === 0 && Number.isFinite(c) && c >= p.minSimilarity ? c : Number.NaN;
    }
  }
  const links = k.topK(k.fromHost(f32([H, n1], ranked)), p.count, 0, n1);
  const { segment, pivot } = k.linkSegments(links, layer.scores);
  const M = L - p.count;
  return k.mergeSegments(layer, { segment, pivot, sigma: k.fromHost(f32([H, M], new Float32Array(H * M).fill(p.sigma))), valueScale: p.valueScale });
}

/** Bytes of every field, so equality is bit for bit. */
function bytes(ts: readonly HostTensor[]): number[][] {
  return ts.map((t) => [...t.shape, ...new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)]);
}

const fields = (l: LayerCache<HostTensor>): HostTensor[] => [l.keys, l.values, l.positions, l.counts, l.scores];

/** Bit-for-bit equality of large results without listing their bytes. */
function sameBits(a: readonly HostTensor[], b: readonly HostTensor[]): boolean {
  const buf = (t: HostTensor): Buffer => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  return a.length === b.length && a.every((t, i) => t.shape.join() === b[i]!.shape.join() && buf(t).equals(buf(b[i]!)));
}

describe('mergeSimilar', () => {
  // One head of six 2-d keys: adjacent cosines 1, 0, 1, 0, -1; slot 5 protected (a recent window of one).
  const keys = [1, 0, 2, 0, 0, 1, 0, 3, 1, 0, -1, 0];
  const values = [0, 1, 1, 1, 2, 1, 3, 1, 4, 1, 5, 1];
  const layer = {
    keys: f32([1, 6, 2], keys),
    values: f32([1, 6, 2], values),
    positions: i32([1, 6], [10, 11, 12, 13, 14, 15]),
    counts: i32([1, 6], [1, 1, 1, 1, 1, 1]),
    scores: f32([1, 6], [0.5, 0.2, 0.1, 0.9, 0.3, 0.4]),
  };
  const base: Plan = { protect: [5], P: 1, count: 2, minSimilarity: -1, sigma: 1, valueScale: 'none' };

  it('merges the most similar unprotected links around the highest-scored member (hand-worked)', () => {
    for (const k of [jsKernels, ...onAll]) {
      const out = run(k, layer, 1, base);
      // Links 0 and 2 (cosine 1; link 4 touches protected slot 5): runs {0, 1} around slot 0 and {2, 3} around slot 3.
      const g01 = Math.exp(-1 / 2); // ||k0 - k1||^2 = 1
      const g23 = Math.exp(-4 / 2); // ||k3 - k2||^2 = 4
      const want = [
        [(1 + 2 * g01) / (1 + g01), 0],
        [0, (3 + g23) / (1 + g23)],
        [1, 0],
        [-1, 0],
      ].flat();
      const wantV = [[g01 / (1 + g01), 1], [(3 + 2 * g23) / (1 + g23), 1], [4, 1], [5, 1]].flat();
      expect(out.layer.keys.shape).toEqual([1, 4, 2]);
      Array.from(out.layer.keys.data).forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 6));
      Array.from(out.layer.values.data).forEach((v, i) => expect(v).toBeCloseTo(wantV[i]!, 6));
      expect(Array.from(out.layer.positions.data)).toEqual([10, 13, 14, 15]);
      expect(Array.from(out.layer.counts.data)).toEqual([2, 2, 1, 1]);
      Array.from(out.layer.scores.data).forEach((v, i) => expect(v).toBeCloseTo([0.7, 1.0, 0.3, 0.4][i]!, 6));
      expect(Array.from(out.eligible.data)).toEqual([4]);
      expect(Array.from(out.lowest.data)).toEqual([1]);
      // A third link: cosines 0 tie between links 1 and 3, the lower wins; one run of slots 0-3 around slot 3.
      const three = run(k, layer, 1, { ...base, count: 3 });
      expect(Array.from(three.layer.positions.data)).toEqual([13, 14, 15]);
      expect(Array.from(three.lowest.data)).toEqual([0]);
      // A floor of 0.5 leaves links 0 and 2; protecting slots 1 and 3 leaves only link 4 (cosine -1), so the
      // second link is an ineligible one, the lowest slot's, and eligible says so.
      expect(Array.from(run(k, layer, 1, { ...base, minSimilarity: 0.5 }).eligible.data)).toEqual([2]);
      const short = run(k, layer, 1, { ...base, protect: [1, 3], P: 2 });
      expect(Array.from(short.eligible.data)).toEqual([1]);
      expect(Array.from(short.lowest.data)).toEqual([-1]);
      // Links 4 and 0: runs {0, 1} around slot 0 and {4, 5} around slot 5 (score 0.4 against 0.3).
      expect(Array.from(short.layer.positions.data)).toEqual([10, 12, 13, 15]);
      // No link: the layer unchanged, lowest +Infinity.
      const none = run(k, layer, 1, { ...base, count: 0 });
      expect(bytes(fields(none.layer))).toEqual(bytes(fields(layer)));
      expect(Array.from(none.lowest.data)).toEqual([Infinity]);
    }
  });

  it('is the chain of kernels it fuses, bit for bit, and core\'s float64 reference within 1e-5, on one thread and split', () => {
    const shape = fc.record({
      H: fc.integer({ min: 1, max: 5 }),
      L: fc.integer({ min: 0, max: 60 }),
      D: fc.integer({ min: 1, max: 20 }),
      share: fc.double({ min: 0, max: 1, noNaN: true }),
      P: fc.integer({ min: 0, max: 8 }),
      minSimilarity: fc.double({ min: -1.5, max: 0.9, noNaN: true }),
      sigma: fc.double({ min: 0.05, max: 4, noNaN: true }),
      count: fc.boolean(),
      seed: fc.integer(),
    });
    fc.assert(
      fc.property(shape, ({ H, L, D, share, P, minSimilarity, sigma, count, seed }) => {
        const r = rng(seed);
        const host = randomLayer(H, L, D, seed);
        const protectedSlots = L === 0 ? 0 : P;
        const plan: Plan = {
          protect: Array.from({ length: H * protectedSlots }, () => Math.floor(r() * L)),
          P: protectedSlots,
          count: Math.floor(share * Math.max(0, L - 1)),
          minSimilarity,
          sigma,
          valueScale: count ? 'count' : 'none',
        };
        const want = run(jsKernels, host, H, plan);
        for (const k of onAll) {
          const got = run(k, host, H, plan);
          expect(bytes(fields(got.layer)), `${k.threads} threads: the chain`).toEqual(bytes(fields(chain(k, host, H, L, plan))));
          expect(bytes([got.eligible, got.lowest, got.layer.positions, got.layer.counts])).toEqual(bytes([want.eligible, want.lowest, want.layer.positions, want.layer.counts]));
          for (const f of ['keys', 'values', 'scores'] as const) {
            const a = got.layer[f].data;
            const b = want.layer[f].data;
            for (let i = 0; i < b.length; i++) expect(Math.abs(a[i]! - b[i]!), `${f}[${i}]`).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(b[i]!)));
          }
        }
      }),
      { numRuns: 120 },
    );
  });

  it('splits large calls over the worker threads, with the same bits as one thread', async () => {
    const [H, L, D] = [16, 3000, 64];
    const host = randomLayer(H, L, D, 5);
    const r = rng(6);
    const plan: Plan = { protect: Array.from({ length: H * 40 }, () => Math.floor(r() * L)), P: 40, count: 1400, minSimilarity: -1, sigma: 2, valueScale: 'count' };
    const one = run(wasmKernels, host, H, plan);
    const want = [...fields(one.layer), one.eligible, one.lowest];
    for (const k of threaded) {
      // The workers start asynchronously and a call never waits for them, so try until they have taken part.
      const before = k.workerChunks();
      const deadline = Date.now() + 20_000;
      while (k.workerChunks() === before && Date.now() < deadline) {
        const got = run(k, host, H, plan);
        expect(sameBits([...fields(got.layer), got.eligible, got.lowest], want)).toBe(true);
        await new Promise((r) => setTimeout(r, 5));
      }
      expect(k.workerChunks()).toBeGreaterThan(before);
    }
  });

  it('refuses bad plans with a typed error naming the field, the same from the wasm screen as from the TypeScript check', () => {
    const bad: [Partial<Plan>, RegExp][] = [
      [{ protect: [6], P: 1 }, /mergeSimilar plan\.protect\[0, 0\] = 6 is not a slot of a 6-slot layer/],
      [{ protect: [-1], P: 1 }, /plan\.protect\[0, 0\] = -1/],
      [{ count: 6 }, /mergeSimilar plan\.count/],
      [{ count: 1.5 }, /mergeSimilar plan\.count/],
      [{ sigma: 0 }, /sigma.*must be a finite number above 0/],
      [{ sigma: Infinity }, /sigma.*must be a finite number above 0/],
      [{ minSimilarity: Number.NaN }, /minSimilarity.*must be a number/],
      [{ valueScale: 'sum' as 'none' }, /valueScale.*must be one of "count", "none"/],
    ];
    for (const [change, message] of bad) for (const k of [jsKernels, ...onAll]) expect(() => run(k, layer, 1, { ...base, ...change })).toThrow(message);
    const zero = { ...layer, counts: i32([1, 6], [1, 1, 0, 1, 1, 1]) };
    for (const k of [jsKernels, ...onAll]) {
      expect(() => run(k, zero, 1, { ...base, valueScale: 'count' })).toThrow(/mergeSimilar layer\.counts\[0, 2\] = 0 must be >= 1 with valueScale "count"/);
      expect(() => run(k, zero, 1, base)).not.toThrow();
    }
  });
});
