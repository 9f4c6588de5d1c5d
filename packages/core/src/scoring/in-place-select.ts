import { ShapeError } from '../errors.js';
import type { KVKernels, LayerCache } from '../kernels.js';
import type { Observation } from '../policy.js';
import { hostTensor } from '../tensor.js';
import type { LayerViews } from './in-place.js';

/**
 * Rows of a head are ranked by key (exact in float64: |position| < 2^31, row < 2^22) `position * 2^22 + row`: position order, ties by row. In a cache in
 * position order that is slot order, so ranking by key is what the functional path does by slot index.
 */
export const ROW_SPAN = 4_194_304;

/** The key of row `j` of a head whose positions start at `base`. */
function keyOf(positions: Int32Array, base: number, j: number): number {
  return positions[base + j]! * ROW_SPAN + j;
}

/** The `n`-th smallest (0-based) of `a[0 .. len)` (distinct values), rearranging `a`: Hoare quickselect. */
function nthSmallest(a: Float64Array, len: number, n: number): number {
  let lo = 0;
  let hi = len - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (n <= j) hi = j;
    else if (n >= i) lo = i;
    else return a[n]!;
  }
  return a[n]!;
}

/** {@link chooseEvicted} for one head by key rank: quickselect the sink and recent thresholds. */
function byRank(positions: Int32Array, base: number, L: number, keys: Float64Array, sink: number, recent: number, row: Float32Array | undefined): number {
  for (let j = 0; j < L; j++) keys[j] = keyOf(positions, base, j);
  const low = sink === 0 ? -Infinity : nthSmallest(keys, L, sink);
  if (sink > 0) for (let j = 0; j < L; j++) keys[j] = keyOf(positions, base, j);
  const high = recent === 0 ? Infinity : nthSmallest(keys, L, L - recent);
  let best = -1;
  let bestScore = Infinity;
  let bestKey = -Infinity;
  for (let j = 0; j < L; j++) {
    const key = keyOf(positions, base, j);
    if (key < low || key >= high) continue;
    let x = row === undefined ? 0 : row[j]!;
    if (x !== x) x = -Infinity;
    if (best < 0 || x < bestScore || (x === bestScore && key > bestKey)) {
      best = j;
      bestScore = x;
      bestKey = key;
    }
  }
  return best;
}

/**
 * One pass over a head's rows: count the rows below `lowP` (sinks) and at or above `highP` (the recent
 * window), and among the others find the lowest score (NaN as -Infinity), ties to the latest position, then
 * the later row. Returns that row, or -1 when the counts are not `sink` and `recent` (or no row is left):
 * with the counts right, the rows below `lowP` are the `sink` lowest keys and those at or above `highP` the
 * `recent` highest, whatever the thresholds were (every row of a position falls on the same side of either),
 * so the answer is the ranked selection's.
 */
function scanHead(positions: Int32Array, base: number, L: number, row: Float32Array, off: number, lowP: number, highP: number, sink: number, recent: number): number {
  let below = 0;
  let above = 0;
  let best = -1;
  let bestScore = Infinity;
  let bestP = -Infinity;
  const end = base + L;
  const shift = off - base;
  for (let i = base; i < end; i++) {
    const p = positions[i]!;
    if (p < lowP) {
      below++;
      continue;
    }
    if (p >= highP) {
      above++;
      continue;
    }
    const s = row[i + shift]!;
    // Most rows score above the lowest so far: one compare (false for NaN, which goes on to the exact test).
    if (s > bestScore) continue;
    const x = s !== s ? -Infinity : s;
    // Ties to the latest position, then the later row (rows only grow). The first row always passes
    // (x <= Infinity, p >= -Infinity).
    if (x < bestScore || (x === bestScore && p >= bestP)) {
      best = i - base;
      bestScore = x;
      bestP = p;
    }
  }
  return below === sink && above === recent ? best : -1;
}

/**
 * The slot of each head that the shared selection (`selectSlots` with `length = budget + 1`) drops, found
 * on the host without ordering the cache: among the rows that are neither the `sink` first nor the
 * `recent` last by position, the lowest score (NaN as -Infinity, like `topK`), ties to the latest
 * position (`topK` keeps the lower slot). `scores` has one row per head or one shared row.
 * O(heads x length) on average; one pass per head on a decode cache.
 * @throws ShapeError when the cache does not hold exactly `budget + 1` rows, or scores are needed and missing.
 */
export function chooseEvicted(v: LayerViews, scores: { readonly data: Float32Array; readonly rows: number } | undefined, budget: number, sinkOption: number, recentOption: number): Int32Array {
  const { heads, length: L, positions } = v;
  if (L !== budget + 1) throw new ShapeError(`chooseEvicted: the cache holds ${L} slots, one more than the budget (${budget}) expected`, { field: 'budget', length: L, budget });
  if (L >= ROW_SPAN) throw new ShapeError(`chooseEvicted: ${L} slots per head is above the ${ROW_SPAN - 1} the in-place path ranks`, { field: 'length', allowed: `< ${ROW_SPAN}` });
  const sink = Math.max(0, Math.min(sinkOption, budget));
  const recent = Math.max(0, Math.min(recentOption, budget - sink));
  const top = budget - sink - recent;
  if (top > 0 && scores === undefined) throw new ShapeError(`chooseEvicted: ${top} slots per head are chosen by score, but no scores were given`, { field: 'scores' });
  const evict = new Int32Array(heads);
  // Without scores every candidate scores 0 (the rule then drops the latest unprotected slot).
  const data = scores === undefined ? new Float32Array(L) : scores.data;
  let keys: Float64Array | undefined;
  for (let h = 0; h < heads; h++) {
    const base = h * L;
    const off = scores === undefined || scores.rows === 1 ? 0 : h * L;
    // First guess, no extra pass: the thresholds from the head's first row (a sink, which an in-place step
    // never moves) and last row (the token just appended), as a decode cache holds them. The counts check
    // the guess (see scanHead), so a wrong one costs a second try, never a different answer.
    let best = scanHead(positions, base, L, data, off, sink === 0 ? -Infinity : positions[base]! + sink, recent === 0 ? Infinity : positions[base + L - 1]! - recent + 1, sink, recent);
    if (best < 0) {
      // The thresholds from the head's lowest and highest positions: right whenever those positions are all
      // present (a decode cache keeps its sinks and newest tokens). Otherwise rank by key (quickselect).
      let lo = Infinity;
      let hi = -Infinity;
      for (let j = 0; j < L; j++) {
        const p = positions[base + j]!;
        if (p < lo) lo = p;
        if (p > hi) hi = p;
      }
      best = scanHead(positions, base, L, data, off, lo + sink, hi - recent + 1, sink, recent);
    }
    if (best < 0) {
      keys ??= new Float64Array(L);
      best = byRank(positions, base, L, keys, sink, recent, scores === undefined ? undefined : data.subarray(off, off + L));
    }
    evict[h] = best;
  }
  return evict;
}

/**
 * The observation of `from` with its per-slot fields (`attention`, `lastAttention`) rearranged to follow
 * `to`, a gather of `from`'s slots (matched per head by position and count order, as `compactLayer`
 * keeps them); `queries` pass through. New tensors are the caller's to dispose.
 */
export async function reorderObservation<T>(k: KVKernels<T>, from: LayerCache<T>, to: LayerCache<T>, observed: Observation<T>): Promise<Observation<T>> {
  if (from === to || (observed.attention === undefined && observed.lastAttention === undefined)) return observed;
  const [pf, pt, cf] = await Promise.all([k.toHost(from.positions), k.toHost(to.positions), k.toHost(from.counts)]);
  const [heads, L] = pf.shape as [number, number];
  const n = pt.shape[1]!;
  const map = new Int32Array(heads * n);
  for (let h = 0; h < heads; h++) {
    const where = new Map<number, number>();
    for (let j = 0; j < L; j++) if (cf.data[h * L + j] !== 0) where.set(pf.data[h * L + j]!, j);
    for (let j = 0; j < n; j++) {
      const src = where.get(pt.data[h * n + j]!);
      if (src === undefined) throw new ShapeError('reorderObservation: a slot of the compacted cache has no source', { field: 'positions', head: h });
      map[h * n + j] = src;
    }
  }
  const out: { -readonly [K in keyof Observation<T>]: Observation<T>[K] } = { ...observed };
  for (const f of ['attention', 'lastAttention'] as const) {
    const t = observed[f];
    if (t === undefined) continue;
    const host = await k.toHost(t);
    const data = new Float32Array(heads * n);
    for (let i = 0; i < map.length; i++) data[i] = host.data[Math.floor(i / n) * L + map[i]!]!;
    out[f] = k.fromHost(hostTensor('float32', [heads, n], data));
  }
  return out;
}
