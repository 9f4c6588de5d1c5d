import { createReferenceKernels } from '@kvfold/backend-reference';
import * as tf from '@tensorflow/tfjs-core';
import { hostLayer, hostTensor, layerFromHost, type HostLayer, type HostTensor, type KVKernels, type LayerCache } from '@kvfold/core';
import { createTfjsKernels, type TfjsKernels } from '../src/index.js';

/** The reference kernels: ground truth. */
export const ref = createReferenceKernels();

/** Engines every parity test runs on (both ship with the package). */
export const ENGINES = ['wasm', 'cpu'] as const;

const cache = new Map<string, Promise<TfjsKernels>>();
/** Kernels for an engine, created once per test file. */
export function kernelsFor(engine: 'wasm' | 'cpu'): Promise<TfjsKernels> {
  let k = cache.get(engine);
  if (!k) {
    k = createTfjsKernels({ engine });
    cache.set(engine, k);
  }
  return k;
}

/** Deterministic PRNG (mulberry32): fast-check draws the seed, the tensors follow from it. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random integer in [lo, hi]. */
export function randInt(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}

/** Random layer: keys/values in [-2, 2), increasing positions with gaps, counts 1..3, scores in [0, 1) (quantised when `ties`). */
export function randomLayer(H: number, L: number, D: number, r: () => number, ties = false): HostLayer {
  const keys = Float32Array.from({ length: H * L * D }, () => r() * 4 - 2);
  const values = Float32Array.from({ length: H * L * D }, () => r() * 4 - 2);
  const positions = new Int32Array(H * L);
  for (let h = 0; h < H; h++) {
    let p = randInt(r, 0, 2);
    for (let i = 0; i < L; i++) {
      positions[h * L + i] = p;
      p += randInt(r, 1, 3);
    }
  }
  const counts = Int32Array.from({ length: H * L }, () => randInt(r, 1, 3));
  const scores = Float32Array.from({ length: H * L }, () => (ties ? randInt(r, 0, 3) / 4 : r()));
  return hostLayer({ heads: H, length: L, headDim: D, keys, values, positions, counts, scores });
}

/** Random float32 host tensor in [lo, hi). */
export function randomF32(shape: number[], r: () => number, lo = -2, hi = 2): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return hostTensor('float32', shape, Float32Array.from({ length: n }, () => lo + r() * (hi - lo)));
}

/**
 * Queries `[queryHeads, n, headDim]` and their positions for `observe` on `base`. The positions straddle the
 * cache's (from -1 to one past the last slot) so some queries see no slot and some see every slot.
 */
export function randomQueries(base: HostLayer, queryHeads: number, n: number, r: () => number): { q: HostTensor; qp: HostTensor } {
  const [, L, D] = base.keys.shape as [number, number, number];
  const q = randomF32([queryHeads, n, D], r);
  const maxPos = base.positions.data[L - 1]!;
  const qp = hostTensor('int32', [n], Array.from({ length: n }, () => randInt(r, -1, maxPos + 1)));
  return { q, qp };
}

/**
 * Element-wise `|a - e| <= tol * (1 + |e|)` for float32 (1e-5 relative, with an absolute floor of the
 * same size for values near 0; equal non-finite values match), exact equality for int32; throws naming the first difference.
 */
export function expectClose(actual: HostTensor, expected: HostTensor, what: string, tol = 1e-5): void {
  if (actual.dtype !== expected.dtype) throw new Error(`${what}: dtype ${actual.dtype} != ${expected.dtype}`);
  if (actual.shape.join(',') !== expected.shape.join(',')) throw new Error(`${what}: shape [${actual.shape}] != [${expected.shape}]`);
  const a = actual.data;
  const e = expected.data;
  for (let i = 0; i < e.length; i++) {
    const ok = actual.dtype === 'int32' ? a[i] === e[i] : Object.is(a[i], e[i]) || a[i] === e[i] || Math.abs(a[i]! - e[i]!) <= tol * (1 + Math.abs(e[i]!));
    if (!ok) throw new Error(`${what}: element ${i} is ${a[i]}, reference ${e[i]} (shape [${expected.shape}])`);
  }
}

/** Download a layer of any backend, field by field. */
export async function layerHost<T>(k: KVKernels<T>, l: LayerCache<T>): Promise<Record<string, HostTensor>> {
  return {
    keys: await k.toHost(l.keys),
    values: await k.toHost(l.values),
    positions: await k.toHost(l.positions),
    counts: await k.toHost(l.counts),
    scores: await k.toHost(l.scores),
  };
}

/** Compare two downloaded layers field by field. */
export function expectLayerClose(actual: Record<string, HostTensor>, expected: Record<string, HostTensor>, what: string, tol = 1e-5): void {
  for (const f of ['keys', 'values', 'positions', 'counts', 'scores']) expectClose(actual[f]!, expected[f]!, `${what} ${f}`, tol);
}

/** Upload a host layer. */
export function upload<T>(k: KVKernels<T>, layer: HostLayer): LayerCache<T> {
  return layerFromHost(k, layer);
}

/** `0..n-1` in a uniformly random order (Fisher-Yates). */
export function shuffled(n: number, r: () => number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = randInt(r, 0, i);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** Host arrays of a SegmentPlan. */
export interface HostSegmentPlan {
  readonly segment: HostTensor;
  readonly pivot: HostTensor;
  readonly sigma: HostTensor;
  readonly outLength: number;
}

/**
 * Random valid segment plan: per head, a random set of at least `M` kept slots (the rest dropped with
 * -1) split into `M` runs at random cuts, a random member as pivot, sigma in [0.3, 3).
 *
 * `meanRun` bounds the mean run length (`M >= L / meanRun`). Without it a long cache can get runs of
 * hundreds of members with random-sign values, whose sums cancel so badly (condition number in the
 * thousands) that no float32 computation can match the float64 reference to 1e-5; KVMerger's runs are
 * neighbours with similar keys, a few slots long.
 */
export function randomSegmentPlan(H: number, L: number, r: () => number, dropRate = 0.2, meanRun = L): HostSegmentPlan {
  const M = randInt(r, Math.max(1, Math.ceil(L / meanRun)), L);
  const segment = new Int32Array(H * L).fill(-1);
  const pivot = new Int32Array(H * M);
  for (let h = 0; h < H; h++) {
    // choose kept slots: always at least M, each other slot kept with probability 1 - dropRate
    const order = shuffled(L, r);
    const kept = new Set(order.slice(0, M));
    for (const i of order.slice(M)) if (r() >= dropRate) kept.add(i);
    const list = [...kept].sort((a, b) => a - b);
    // M - 1 distinct cut points among list positions 1..list.length-1
    const cutsAll = shuffled(list.length - 1, r).map((i) => i + 1);
    const cuts = new Set(cutsAll.slice(0, M - 1));
    let run = 0;
    const members: number[][] = [[]];
    list.forEach((slot, j) => {
      if (j > 0 && cuts.has(j)) {
        run++;
        members.push([]);
      }
      segment[h * L + slot] = run;
      members[run]!.push(slot);
    });
    for (let o = 0; o < M; o++) {
      const m = members[o]!;
      pivot[h * M + o] = m[randInt(r, 0, m.length - 1)]!;
    }
  }
  const sigma = Float32Array.from({ length: H * M }, () => 0.3 + r() * 2.7);
  return {
    segment: hostTensor('int32', [H, L], segment),
    pivot: hostTensor('int32', [H, M], pivot),
    sigma: hostTensor('float32', [H, M], sigma),
    outLength: M,
  };
}

/** Host arrays of a NeighbourMergePlan. */
export interface HostNeighbourPlan {
  readonly keep: HostTensor;
  readonly source: HostTensor;
  readonly targetStart: HostTensor;
  readonly targetCount: HostTensor;
  readonly gate: HostTensor;
}

/** Random valid neighbour-merge plan: `K` kept slots per head, the rest as sources with random windows up to `window` and gates 0/1 or in [0, 1]. */
export function randomNeighbourPlan(H: number, L: number, K: number, window: number, r: () => number): HostNeighbourPlan {
  const S = L - K;
  const keep = new Int32Array(H * K);
  const source = new Int32Array(H * S);
  const targetStart = new Int32Array(H * S);
  const targetCount = new Int32Array(H * S);
  const gate = new Float32Array(H * S);
  for (let h = 0; h < H; h++) {
    const order = shuffled(L, r);
    const kept = order.slice(0, K).sort((a, b) => a - b);
    const src = order.slice(K).sort((a, b) => a - b);
    keep.set(kept, h * K);
    source.set(src, h * S);
    for (let s = 0; s < S; s++) {
      const st = randInt(r, 0, K);
      targetStart[h * S + s] = st;
      targetCount[h * S + s] = randInt(r, 0, Math.min(window, K - st));
      gate[h * S + s] = r() < 0.5 ? (r() < 0.5 ? 0 : 1) : r();
    }
  }
  return {
    keep: hostTensor('int32', [H, K], keep),
    source: hostTensor('int32', [H, S], source),
    targetStart: hostTensor('int32', [H, S], targetStart),
    targetCount: hostTensor('int32', [H, S], targetCount),
    gate: hostTensor('float32', [H, S], gate),
  };
}

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

