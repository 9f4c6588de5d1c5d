import { segmentHead, selectBest, selectTopFloat32, type HostScratch } from '@kvfold/core';

/**
 * Host-side planning of KVMerger: which slots are protected, which adjacent links merge, which slots
 * are trimmed, and each merged slot's pivot. Works on small `[heads, length]` arrays only; keys and
 * values never leave the backend for planning.
 */

/** Protection class of a slot: merged or evicted freely. */
export const UNPROTECTED = 0;
/** Protection class of a slot in the recent window. */
export const RECENT = 1;
/** Protection class of a heavy hitter (top accumulated attention outside the recent window). */
export const HEAVY = 2;

/** Input of {@link planLayer}. All arrays are row-major per head. */
export interface PlanInput {
  /** Number of kv heads. */
  readonly heads: number;
  /** Slots per head. */
  readonly length: number;
  /** Accumulated attention, `[heads, length]`. */
  readonly scores: ArrayLike<number>;
  /** Adjacent key cosine, `[heads, length - 1]`; absent (or empty) = no link may merge (skipped layer). */
  readonly cosine?: ArrayLike<number>;
  /** Slots to keep in `exact` mode (ignored by `paper` mode, which does not trim). */
  readonly target: number;
  /**
   * Protection class of each slot ({@link UNPROTECTED}, {@link RECENT}, {@link HEAVY}), one array of
   * `length` per layout: `heads` arrays, or one with `sets: 'shared'`. {@link protectSlots} computes them
   * with the shared selection.
   */
  readonly protection: readonly ArrayLike<number>[];
  /** `exact`: merge the best links until `target` is reached, then trim. `paper`: links above `eps`, aligned across heads. */
  readonly mode: 'exact' | 'paper';
  /** Threshold of `paper` mode (strictly above merges). */
  readonly eps: number;
  /** Links below this cosine never merge. */
  readonly minSimilarity: number;
  /** One layout per head, or one shared layout from head-mean cosine and scores. */
  readonly sets: 'per-head' | 'shared';
}

/** What {@link planLayer} decided. */
export interface LayerPlan {
  /** Number of kv heads. */
  readonly heads: number;
  /** Input slots per head. */
  readonly length: number;
  /** Output slots per head (the same on every head). */
  readonly outLength: number;
  /** Output slot of each input slot or -1 (evicted), `[heads, length]`; a `SegmentPlan.segment`. */
  readonly segment: Int32Array;
  /** Input slot of each output slot's pivot, `[heads, outLength]`. */
  readonly pivot: Int32Array;
  /** Links merged on each head. */
  readonly merged: readonly number[];
  /** Input slots evicted on each head. */
  readonly evicted: readonly number[];
  /** Lowest cosine among each head's merged links (the effective eps), or null when none merged. */
  readonly effectiveEps: readonly (number | null)[];
}

/** Attention scores as comparable numbers (NaN ranks lowest). */
function val(x: number): number {
  return Number.isNaN(x) ? -Infinity : x;
}

/** Three-way comparison that stays consistent for infinities. */
function cmp(a: number, b: number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Links `(i, i+1)` that may merge: both slots unprotected, cosine finite and `>= minSimilarity`, and
 * strictly above `above` when given. Returned best first (highest cosine, ties to the lower index).
 */
export function candidateLinks(cos: ArrayLike<number>, prot: ArrayLike<number>, minSimilarity: number, above?: number): number[] {
  const out = Array.from(eligibleLinks(cos, prot, minSimilarity, above));
  out.sort((a, b) => cmp(cos[b]!, cos[a]!) || a - b);
  return out;
}

/**
 * The eligibility rule of a link: both slots unprotected, cosine finite, `>= minSimilarity` and `> above`.
 * Protection classes are small non-negative integers, so one OR tests both slots against {@link UNPROTECTED}
 * (0, written as a literal: an exported binding is read through its module cell at every use), and
 * `c - c === 0` is finiteness. In `linkRanking`'s loop at 32 x 16k: 2.2-2.3 ms, against 2.6-2.9 ms with two
 * comparisons against `UNPROTECTED` and `Number.isFinite`.
 */
function mayMerge(c: number, left: number, right: number, minSimilarity: number, above: number): boolean {
  return (left | right) === 0 && c - c === 0 && c >= minSimilarity && c > above;
}

/** The links {@link candidateLinks} returns, ascending by index (unranked). */
function eligibleLinks(cos: ArrayLike<number>, prot: ArrayLike<number>, minSimilarity: number, above?: number): Int32Array {
  const out = new Int32Array(cos.length);
  let n = 0;
  const threshold = above ?? -Infinity;
  for (let i = 0; i < cos.length; i++) if (mayMerge(cos[i]!, prot[i]!, prot[i + 1]!, minSimilarity, threshold)) out[n++] = i;
  return out.subarray(0, n);
}

/**
 * The `count` best of the eligible `links` (highest cosine, ties to the lower index), in any order: a
 * linear-time selection, since the plan only needs the set. A float32 row (the backends' cosines) takes the
 * topK kernel's radix selection over the row with every other link ranked lowest; float64 values (the
 * head-mean of `shared`) a comparison quickselect. Both pick the same set for the same values.
 */
function bestLinks(links: Int32Array, cos: Float32Array | Float64Array, count: number, selected: Int32Array | undefined): Int32Array {
  if (selected) return selected;
  if (count >= links.length) return links;
  if (cos instanceof Float32Array) {
    // NaN ranks below every number in the radix order; eligible cosines are finite, so only links win.
    const masked = new Float32Array(cos.length).fill(Number.NaN);
    for (let j = 0; j < links.length; j++) masked[links[j]!] = cos[links[j]!]!;
    return selectTopFloat32(masked, count);
  }
  const idx = links.slice();
  selectBest(idx, cos, count);
  return idx.subarray(0, count);
}

/** One head's layout: merged links and evicted slots. */
interface RowLayout {
  /** The merged links' indices, ascending. */
  readonly chosen: Int32Array;
  /** Evicted slots flagged 1; null when nothing is evicted (the common case: no flags to allocate). */
  readonly evicted: Uint8Array | null;
  readonly merged: number;
  readonly evictedSlots: number;
  /** Groups (output slots) left after merging and trimming. */
  readonly groups: number;
  readonly effectiveEps: number | null;
}

/** Merge the `count` best of `candidates`, then (when `target` is given) trim groups beyond it. */
function layoutRow(length: number, cos: Float32Array | Float64Array, scores: ArrayLike<number>, prot: ArrayLike<number>, candidates: Int32Array, count: number, target: number | null, selected: Int32Array | undefined): RowLayout {
  // Ascending already from the radix selection, the kernel and the candidate list; the quickselect's is not.
  const picked = bestLinks(candidates, cos, count, selected);
  const chosen = cos instanceof Float32Array ? picked : picked.slice().sort();
  const take = chosen.length;
  const eps = lowestCosine(chosen, cos, 0);
  let evicted: Uint8Array | null = null;
  let evictedSlots = 0;
  let groups = length - take;
  if (target !== null && groups > target) {
    const links = new Uint8Array(Math.max(0, length - 1));
    for (let j = 0; j < take; j++) links[chosen[j]!] = 1;
    evicted = new Uint8Array(length);
    // Group score = sum of members (a merged slot carries the sum); merged groups never hold a protected slot.
    const list: { start: number; end: number; score: number; cls: number }[] = [];
    for (let s = 0; s < length; ) {
      let e = s;
      let score = val(scores[s]!);
      while (e < length - 1 && links[e] === 1) score += val(scores[++e]!);
      list.push({ start: s, end: e, score, cls: s === e ? prot[s]! : UNPROTECTED });
      s = e + 1;
    }
    let excess = groups - target;
    for (const cls of [UNPROTECTED, HEAVY, RECENT]) {
      if (excess <= 0) break;
      // Evict the lowest first; among equal scores the higher index goes first, so the lower one is kept.
      const cands = list.filter((g) => g.cls === cls).sort((a, b) => cmp(a.score, b.score) || b.start - a.start);
      for (const g of cands.slice(0, excess)) {
        for (let i = g.start; i <= g.end; i++) evicted[i] = 1;
        evictedSlots += g.end - g.start + 1;
        groups--;
        excess--;
      }
    }
  }
  return { chosen, evicted, merged: take, evictedSlots, groups, effectiveEps: eps };
}

/**
 * The lowest cosine among merged `links` (indices into `cos` from `offset` on), or null when none merged: a
 * head's effective eps ({@link LayerPlan.effectiveEps}).
 */
export function lowestCosine(links: ArrayLike<number>, cos: ArrayLike<number>, offset: number): number | null {
  let low = Infinity;
  for (let j = 0; j < links.length; j++) low = Math.min(low, cos[offset + links[j]!]!);
  return links.length > 0 ? low : null;
}

/** Mean over heads of a `[heads, n]` row-major array. */
export function headMean(a: ArrayLike<number>, heads: number, n: number): Float64Array {
  const out = new Float64Array(n);
  for (let h = 0; h < heads; h++) for (let i = 0; i < n; i++) out[i]! += a[h * n + i]!;
  for (let i = 0; i < n; i++) out[i]! /= heads;
  return out;
}

function row(a: ArrayLike<number>, h: number, n: number): ArrayLike<number> {
  if (a instanceof Float32Array || a instanceof Float64Array || a instanceof Int32Array) return a.subarray(h * n, (h + 1) * n);
  return Array.from({ length: n }, (_, i) => a[h * n + i]!);
}

/** What {@link linkRanking} hands to a backend's `topK` kernel. */
export interface LinkRanking {
  /** Each head's eligible links' cosines, every other link NaN (ranked lowest), float32 `[heads, length - 1]`. */
  readonly rows: Float32Array;
  /** Links each head merges (the `topK` budget). */
  readonly count: number;
  /** Eligible links per head, `[heads]`. */
  readonly eligible: Int32Array;
}

/**
 * The per-head link ranking {@link planLayer} would run, for a backend's `topK` kernel to run instead: each
 * head's eligible links' cosines with every other link NaN (ranked lowest), float32 `[heads, length - 1]`,
 * how many links each head merges, and how many are eligible on each head. Null when nothing needs ranking: shared sets, no float32 cosines,
 * or no head with more eligible links than it merges. With `scratch` the rows are its `ranking` array (valid
 * until the scratch hands it out again).
 */
export function linkRanking(input: PlanInput, scratch?: HostScratch): LinkRanking | null {
  const { heads, length, cosine } = input;
  const paper = input.mode === 'paper';
  const n1 = Math.max(0, length - 1);
  if ((input.sets === 'shared' && heads > 1) || !(cosine instanceof Float32Array) || cosine.length !== heads * n1 || input.protection.length !== heads) return null;
  // One pass per head writes the masked row and counts the eligible links (measured faster than
  // eligibleLinks's index list plus a scatter: 2.2-2.9 against 3.0-4.1 ms at 32 x 16k).
  const rows = scratch ? scratch.float32('ranking', heads * n1) : new Float32Array(heads * n1);
  const eligible = new Int32Array(heads);
  const above = paper ? input.eps : -Infinity;
  for (let h = 0; h < heads; h++) eligible[h] = maskLinks(cosine, input.protection[h]!, rows, h * n1, n1, input.minSimilarity, above);
  const count = paper ? Math.min(...eligible) : Math.max(0, length - input.target);
  if (eligible.every((n) => count >= n)) return null;
  return { rows, count, eligible };
}

/**
 * One head's row of {@link linkRanking}: each eligible link's cosine, NaN for the others, from `row` on; returns
 * the eligible links. A function of its own so that its loop is optimised with the rest of its code: inlined in
 * `linkRanking`, the loop ran as on-stack-replaced code that deoptimised at every call on the first property
 * read after it (no type feedback yet when the loop was compiled; `node --trace-deopt`).
 */
function maskLinks(cosine: Float32Array, prot: ArrayLike<number>, rows: Float32Array, row: number, n1: number, minSimilarity: number, above: number): number {
  // The row is copied whole with one set, then only the ineligible links (a tenth under the default shares:
  // neighbours of heavy hitters and the recent window) are written: 1.5 against 2.1 ms at 32 x 16k for a store per link.
  rows.set(cosine.subarray(row, row + n1), row);
  let blocked = 0;
  // Each slot's class is read once: the right slot of one link is the left slot of the next.
  let left = prot[0]!;
  for (let i = 0; i < n1; i++) {
    const right = prot[i + 1]!;
    if (!mayMerge(rows[row + i]!, left, right, minSimilarity, above)) {
      rows[row + i] = Number.NaN;
      blocked++;
    }
    left = right;
  }
  return n1 - blocked;
}

/**
 * The winners of a {@link linkRanking}: the `count` best links of each head, ascending, row-major
 * `[heads, count]` (what `selectSlots` returns for the ranking's rows with a budget of `count`).
 */
export interface LinkSelection {
  /** Links merged per head. */
  readonly count: number;
  /** Link indices, `[heads, count]`. */
  readonly links: Int32Array;
  /** The ranking's eligible links per head (a head with no more than `count` merges them all). */
  readonly eligible: Int32Array;
}

/**
 * Plan one layer: with the recent window and heavy hitters protected (`input.protection`), pick the links to merge (see
 * {@link PlanInput.mode}), trim in `exact` mode, and choose each output slot's pivot (highest score of
 * its head, ties to the lower index).
 *
 * `exact`: per layout, merge the `length - target` eligible links of highest cosine; if there are too
 * few, merge them all and evict the lowest-scored unprotected slots, then the lowest heavy hitters.
 * `paper`: each layout counts its eligible links above `eps`; all heads merge their top `M` links with
 * `M` the smallest count, because heads must keep the same number of slots. No trimming.
 *
 * `selected`, when given, is the backend's selection of the {@link linkRanking} of this same input (the
 * same set the host selection picks: the topK kernel is core's radix selection), so the host does not rank.
 * With `scratch` the plan's `segment` and `pivot` are its arrays (valid until it hands them out again).
 */
export function planLayer(input: PlanInput, selected?: LinkSelection, scratch?: HostScratch): LayerPlan {
  const { heads, length, mode } = input;
  const cosine = input.cosine && input.cosine.length === heads * Math.max(0, length - 1) ? input.cosine : undefined;
  const n1 = Math.max(0, length - 1);
  const shared = input.sets === 'shared' && heads > 1;
  const layoutCount = shared ? 1 : heads;
  const layoutScores: ArrayLike<number>[] = [];
  const layoutCos: (Float32Array | Float64Array)[] = [];
  for (let l = 0; l < layoutCount; l++) {
    layoutScores.push(shared ? headMean(input.scores, heads, length) : row(input.scores, l, length));
    // What the selection ranks: a backend's float32 row as it is, anything else as float64 (exact for float32).
    const c = !cosine ? new Float64Array(n1) : shared ? headMean(cosine, heads, n1) : cosine instanceof Float32Array ? cosine.subarray(l * n1, (l + 1) * n1) : Float64Array.from(row(cosine, l, n1));
    layoutCos.push(c);
  }
  const prots = input.protection;
  if (prots.length !== layoutCount || prots.some((p) => p.length !== length)) {
    throw new Error(`kvmerger: internal error, protection for ${prots.length} layouts of ${prots[0]?.length} slots; the plan has ${layoutCount} of ${length}`);
  }
  if (selected && (shared || !cosine || (mode === 'exact' ? selected.count !== Math.max(0, length - input.target) : selected.count !== Math.min(...selected.eligible)) || selected.links.length !== heads * selected.count || selected.eligible.length !== heads)) {
    throw new Error(`kvmerger: internal error, a selection of ${selected.count} links per head on ${selected.eligible.length} heads for a plan of ${shared ? 'one shared layout' : `${heads} heads`}`);
  }
  // A head whose links the backend ranked needs no candidate list: the selection is its merged set.
  const ranked = (l: number): boolean => selected !== undefined && selected.eligible[l]! > selected.count;
  const cands = prots.map((p, l) => (cosine && !ranked(l) ? eligibleLinks(layoutCos[l]!, p, input.minSimilarity, mode === 'paper' ? input.eps : undefined) : new Int32Array(0)));
  const count = selected ? selected.count : mode === 'paper' ? Math.min(...cands.map((c) => c.length)) : Math.max(0, length - input.target);
  const target = mode === 'exact' ? input.target : null;
  const rowOf = (l: number): Int32Array | undefined => (ranked(l) ? selected!.links.subarray(l * count, (l + 1) * count) : undefined);
  const layouts = prots.map((p, l) => layoutRow(length, layoutCos[l]!, layoutScores[l]!, p, cands[l]!, count, target, rowOf(l)));

  // segmentHead and segmentRow write every entry of both, so reused arrays need no clearing.
  const segment = scratch ? scratch.int32('segment', heads * length) : new Int32Array(heads * length);
  // Every head keeps the same number of groups (checked below); pivots go straight into their rows.
  const lay0 = layouts[0];
  const outLength = lay0 ? lay0.groups : 0;
  const pivot = scratch ? scratch.int32('pivot', heads * outLength) : new Int32Array(heads * outLength);
  // Continuation flags of one head at a time for segmentHead (every entry rewritten per head).
  const continues = scratch ? scratch.uint8('continues', length) : new Uint8Array(length);
  for (let h = 0; h < heads; h++) {
    const lay = layouts[shared ? 0 : h]!;
    const id = lay.evicted === null ? segmentHead(lay.chosen, continues, input.scores, h * length, length, segment, pivot, h * outLength) : segmentRow(lay.chosen, lay.evicted, input.scores, h * length, length, segment, pivot, h * outLength);
    if (id !== outLength) throw new Error(`kvmerger: internal error, head ${h} planned ${id} slots, head 0 ${outLength}`);
  }
  const pick = <K extends keyof RowLayout>(key: K): RowLayout[K][] => Array.from({ length: heads }, (_, h) => layouts[shared ? 0 : h]![key]);
  return { heads, length, outLength, segment, pivot, merged: pick('merged'), evicted: pick('evictedSlots'), effectiveEps: pick('effectiveEps') };
}

/**
 * One head's segment ids (-1 for evicted groups) and pivots; returns the number of output slots. It walks the
 * merged links (ascending) instead of every slot's link flag: the slots between runs are singletons (their own
 * pivots, no comparison), and only a run's members compare scores (highest, ties to the lower index). The
 * benchmark's link flags are too irregular for branch prediction; `planLayer` at 16k took 9.1 ms with the
 * per-slot walk and 8.2 ms with this one.
 */
function segmentRow(chosen: Int32Array, evicted: Uint8Array | null, sc: ArrayLike<number>, base: number, length: number, segment: Int32Array, pivot: Int32Array, prow: number): number {
  let id = 0;
  let s = 0;
  for (let j = 0; j <= chosen.length; ) {
    // Singletons up to the next run (or the end of the head).
    const first = j < chosen.length ? chosen[j]! : length;
    for (let i = s; i < first; i++) {
      if (evicted !== null && evicted[i] === 1) {
        segment[base + i] = -1;
        continue;
      }
      segment[base + i] = id;
      pivot[prow + id] = i;
      id++;
    }
    if (j === chosen.length) break;
    let last = first + 1;
    for (j++; j < chosen.length && chosen[j] === last; j++) last++;
    s = last + 1;
    // Trimming evicts whole groups, so the first member says for the run.
    if (evicted !== null && evicted[first] === 1) {
      segment.fill(-1, base + first, base + last + 1);
      continue;
    }
    let p = first;
    let best = val(sc[base + first]!);
    segment[base + first] = id;
    for (let i = first + 1; i <= last; i++) {
      segment[base + i] = id;
      const v = val(sc[base + i]!);
      if (v > best) {
        best = v;
        p = i;
      }
    }
    pivot[prow + id] = p;
    id++;
  }
  return id;
}

/** True when the plan keeps every slot unmerged (the cache would come back unchanged). */
export function isIdentity(plan: LayerPlan): boolean {
  return plan.outLength === plan.length && plan.evicted.every((e) => e === 0);
}
