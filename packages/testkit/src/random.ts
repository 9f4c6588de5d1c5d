import { hostLayer, hostTensor, type HostLayer, type HostTensor, type KVKernels, type NeighbourMergePlan, type SegmentPlan } from '@kvfold/core';

/**
 * Random test data for kernel and policy tests: every generator takes a `() => number` uniform source, so
 * a property test derives all tensor contents from one fast-check seed.
 * @module
 */

/** Deterministic uniform source in [0, 1) (mulberry32) from a 32-bit seed. */
export function mulberry32(seed: number): () => number {
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

/** Random float32 host tensor in [lo, hi). */
export function randomF32(shape: readonly number[], r: () => number, lo = -2, hi = 2): HostTensor<'float32'> {
  const n = shape.reduce((a, b) => a * b, 1);
  return hostTensor('float32', shape, Float32Array.from({ length: n }, () => lo + r() * (hi - lo)));
}

/**
 * Random layer: keys and values in [-2, 2), strictly increasing positions with gaps of 1 to 3 (starting
 * at 0 to 2), counts 1 to 3, scores in [0, 1) (quantised to quarters, so many tie, when `ties`).
 */
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

/**
 * A one-head layer with headDim 1 for hand-made decode cases: slots at `positions` (in the order given),
 * key 1, value = position, count 1, score = position / 10.
 */
export function positionsLayer(positions: readonly number[]): HostLayer {
  const L = positions.length;
  return hostLayer({
    heads: 1,
    length: L,
    headDim: 1,
    keys: new Float32Array(L).fill(1),
    values: Float32Array.from(positions),
    positions: Int32Array.from(positions),
    counts: new Int32Array(L).fill(1),
    scores: Float32Array.from(positions, (p) => p / 10),
  });
}

/** Queries and their positions, for `observe`. */
export interface RandomQueries {
  /** float32 `[queryHeads, n, headDim]`. */
  readonly q: HostTensor;
  /** int32 `[n]`. */
  readonly qp: HostTensor;
}

/**
 * Queries `[queryHeads, n, headDim]` and their positions for `observe` on `base`. The positions straddle the
 * cache's (from -1 to one past the last slot) so some queries see no slot and some see every slot.
 */
export function randomQueries(base: HostLayer, queryHeads: number, n: number, r: () => number): RandomQueries {
  const [, L, D] = base.keys.shape as [number, number, number];
  const q = randomF32([queryHeads, n, D], r);
  const maxPos = base.positions.data[L - 1]!;
  const qp = hostTensor('int32', [n], Array.from({ length: n }, () => randInt(r, -1, maxPos + 1)));
  return { q, qp };
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
  /** int32 `[H, L]`. */
  readonly segment: HostTensor;
  /** int32 `[H, M]`. */
  readonly pivot: HostTensor;
  /** float32 `[H, M]`. */
  readonly sigma: HostTensor;
  /** M. */
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
  const M = L === 0 ? 0 : randInt(r, Math.max(1, Math.ceil(L / meanRun)), L);
  const segment = new Int32Array(H * L).fill(-1);
  const pivot = new Int32Array(H * M);
  for (let h = 0; h < H; h++) {
    // choose kept slots: always at least M, each other slot kept with probability 1 - dropRate
    const order = shuffled(L, r);
    const kept = new Set(order.slice(0, M));
    for (const i of order.slice(M)) if (r() >= dropRate) kept.add(i);
    const list = [...kept].sort((a, b) => a - b);
    // M - 1 distinct cut points among list positions 1..list.length-1
    const cuts = new Set(shuffled(list.length - 1, r).map((i) => i + 1).slice(0, M - 1));
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
  return { segment: hostTensor('int32', [H, L], segment), pivot: hostTensor('int32', [H, M], pivot), sigma: hostTensor('float32', [H, M], sigma), outLength: M };
}

/** Host arrays of a NeighbourMergePlan. */
export interface HostNeighbourPlan {
  /** int32 `[H, K]`. */
  readonly keep: HostTensor;
  /** int32 `[H, S]`. */
  readonly source: HostTensor;
  /** int32 `[H, S]`. */
  readonly targetStart: HostTensor;
  /** int32 `[H, S]`. */
  readonly targetCount: HostTensor;
  /** float32 `[H, S]`. */
  readonly gate: HostTensor;
}

/** A host segment plan's arrays uploaded to `k`, as `mergeSegments` takes them. */
export function uploadSegmentPlan<T>(k: KVKernels<T>, p: Pick<HostSegmentPlan, 'segment' | 'pivot' | 'sigma'>, valueScale: SegmentPlan<T>['valueScale']): SegmentPlan<T> {
  return { segment: k.fromHost(p.segment), pivot: k.fromHost(p.pivot), sigma: k.fromHost(p.sigma), valueScale };
}

/** A host neighbour-merge plan's arrays uploaded to `k`, as `mergeIntoNeighbours` takes them. */
export function uploadNeighbourPlan<T>(k: KVKernels<T>, p: HostNeighbourPlan): NeighbourMergePlan<T> {
  return { keep: k.fromHost(p.keep), source: k.fromHost(p.source), targetStart: k.fromHost(p.targetStart), targetCount: k.fromHost(p.targetCount), gate: k.fromHost(p.gate) };
}

/**
 * Random valid neighbour-merge plan: `K` kept slots per head, `sources` of the others (default all of them)
 * as sources with random windows up to `window` (some empty) and gates 0/1 or in [0, 1].
 */
export function randomNeighbourPlan(H: number, L: number, K: number, window: number, r: () => number, sources = L - K): HostNeighbourPlan {
  return neighbourPlan(H, L, K, sources, r, () => {
    const st = randInt(r, 0, K);
    return [st, randInt(r, 0, Math.min(window, K - st))];
  }, () => (r() < 0.5 ? (r() < 0.5 ? 0 : 1) : r()));
}

/**
 * A CaM-shaped plan of `sources` sources for `H` heads of `L` slots keeping `K`: each source's window starts at the
 * first kept slot after it (starts ascending, several sources may share one) and is `window` wide or runs to the end
 * of the kept set, so every window reaches its block's end (the merge kernels' one-sweep path); with `mixed`, a fifth
 * of the windows are narrower (blocks with a window inside them take the general path). Gates 0, 1 or in [0, 1].
 */
export function camNeighbourPlan(H: number, L: number, K: number, sources: number, window: number, r: () => number, mixed = false): HostNeighbourPlan {
  return neighbourPlan(H, L, K, sources, r, (kept, slot) => {
    const start = kept.filter((x) => x < slot).length;
    const st = Math.min(start, Math.max(0, K - 1));
    const c = Math.min(window, K - st);
    return [st, mixed && c > 0 && r() < 0.2 ? randInt(r, 0, c) : c];
  }, () => (r() < 0.3 ? (r() < 0.5 ? 0 : 1) : r()));
}

/** Random kept and source slots per head (ascending), each source's window from `windowOf(kept, sourceSlot)` and gate from `gateOf()`. */
function neighbourPlan(H: number, L: number, K: number, S: number, r: () => number, windowOf: (kept: number[], slot: number) => [number, number], gateOf: () => number): HostNeighbourPlan {
  const keep = new Int32Array(H * K);
  const source = new Int32Array(H * S);
  const targetStart = new Int32Array(H * S);
  const targetCount = new Int32Array(H * S);
  const gate = new Float32Array(H * S);
  for (let h = 0; h < H; h++) {
    const order = shuffled(L, r);
    const kept = order.slice(0, K).sort((a, b) => a - b);
    const src = order.slice(K, K + S).sort((a, b) => a - b);
    keep.set(kept, h * K);
    source.set(src, h * S);
    for (let s = 0; s < S; s++) {
      const [st, c] = windowOf(kept, src[s]!);
      targetStart[h * S + s] = st;
      targetCount[h * S + s] = c;
      gate[h * S + s] = gateOf();
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
