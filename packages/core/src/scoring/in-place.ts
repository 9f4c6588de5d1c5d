import { ShapeError } from '../errors.js';
import { cacheShape, type KVKernels, type LayerCache } from '../kernels.js';
import { hostTensor } from '../tensor.js';

/**
 * In-place decode eviction (issue 12, target 4): on a backend that can edit tensors (`KVKernels.editView`), a decode
 * step that drops one slot per head moves the head's newest row into the evicted row and leaves the last
 * row spare, instead of writing a new cache of `budget` slots. The next one-token append writes into the
 * spare row. Both touch O(heads x headDim) memory per token.
 *
 * What this costs the layout, and who pays: such a cache is not in position order, and between a step and
 * the next append its last row of every head is a **spare row** (count 0, position {@link SPARE_POSITION},
 * score 0, zero key and value), which the causal mask of `observe` never lets a query see. Only the
 * in-place decode path of `ScorerPolicy` and the cache manager's append read such a cache as it is; every
 * other reader puts it back in order first with {@link compactLayer} (one gather, what a functional step
 * costs anyway). The kept slots and their contents are the functional path's: {@link compactLayer} of an
 * in-place result equals the functional result.
 * @module
 */

/** Position of a spare row: above any query position, so attention never sees it. */
export const SPARE_POSITION = 2_147_483_647;

/** Views of every field of a layer on a backend that can edit tensors in place. */
export interface LayerViews {
  /** `[heads, length, headDim]`. */
  readonly keys: Float32Array;
  /** `[heads, length, headDim]`. */
  readonly values: Float32Array;
  /** `[heads, length]`. */
  readonly positions: Int32Array;
  /** `[heads, length]`. */
  readonly counts: Int32Array;
  /** `[heads, length]`. */
  readonly scores: Float32Array;
  /** Heads. */
  readonly heads: number;
  /** Rows per head (spare row included). */
  readonly length: number;
  /** Head dimension. */
  readonly headDim: number;
}

/**
 * The layer's own writable memory (`KVKernels.editView`), or undefined when the backend's tensors cannot
 * change in place or one of the layer's shares its memory with another tensor. Valid until the next kernel
 * call or upload (see `editView`).
 */
export function layerViews<T>(k: KVKernels<T>, layer: LayerCache<T>): LayerViews | undefined {
  if (!k.editView) return undefined;
  const keys = k.editView(layer.keys);
  const values = k.editView(layer.values);
  const positions = k.editView(layer.positions);
  const counts = k.editView(layer.counts);
  const scores = k.editView(layer.scores);
  if (!keys || !values || !positions || !counts || !scores) return undefined;
  const { heads, length, headDim } = cacheShape(k, layer);
  return {
    keys: keys.data as Float32Array,
    values: values.data as Float32Array,
    positions: positions.data as Int32Array,
    counts: counts.data as Int32Array,
    scores: scores.data as Float32Array,
    heads,
    length,
    headDim,
  };
}

/** Whether every head's last row is spare (count 0): the state an in-place step leaves. */
export function hasSpareRow(v: LayerViews): boolean {
  if (v.length === 0 || v.heads === 0) return false;
  for (let h = 0; h < v.heads; h++) if (v.counts[h * v.length + v.length - 1] !== 0) return false;
  return true;
}

/**
 * Whether the live slots are in strictly increasing position order with no spare row: what every reader
 * but the in-place path expects. O(heads x length) integer compares on the views.
 */
export function isOrdered(v: LayerViews): boolean {
  const { heads, length, positions, counts } = v;
  if (length === 0) return true;
  for (let h = 0; h < heads; h++) {
    const base = h * length;
    const end = base + length;
    // The previous position kept in a local: every decode step that does not evict in place runs this scan.
    let prev = positions[base]!;
    if (counts[base] === 0) return false;
    for (let i = base + 1; i < end; i++) {
      const p = positions[i]!;
      if (p <= prev || counts[i] === 0) return false;
      prev = p;
    }
  }
  return true;
}

/** Copy row `from` of head `h` over row `to` of the same head, in every field. */
function moveRow(v: LayerViews, h: number, from: number, to: number): void {
  const { length: L, headDim: D } = v;
  const a = h * L + from;
  const b = h * L + to;
  // copyWithin: one row, no subarray views made per call.
  v.keys.copyWithin(b * D, a * D, (a + 1) * D);
  v.values.copyWithin(b * D, a * D, (a + 1) * D);
  v.positions[b] = v.positions[a]!;
  v.counts[b] = v.counts[a]!;
  v.scores[b] = v.scores[a]!;
}

/** Make row `row` of head `h` spare. */
function clearRow(v: LayerViews, h: number, row: number): void {
  const { length: L, headDim: D } = v;
  const i = h * L + row;
  v.keys.fill(0, i * D, (i + 1) * D);
  v.values.fill(0, i * D, (i + 1) * D);
  v.positions[i] = SPARE_POSITION;
  v.counts[i] = 0;
  v.scores[i] = 0;
}

/**
 * Drop slot `evict[h]` of every head in place: the head's last row (the newest token) moves into it and
 * the last row becomes spare. O(heads x headDim).
 * @throws ShapeError when `evict` does not hold one slot per head inside the cache.
 */
export function evictInPlace(v: LayerViews, evict: Int32Array): void {
  const { heads, length } = v;
  if (evict.length !== heads) throw new ShapeError(`evictInPlace: ${evict.length} evicted slots for ${heads} heads`, { field: 'evict', allowed: heads });
  for (let h = 0; h < heads; h++) {
    const e = evict[h]!;
    if (!Number.isInteger(e) || e < 0 || e >= length) throw new ShapeError(`evictInPlace: evict[${h}] = ${e} is outside 0..${length - 1}`, { field: 'evict', head: h, allowed: `0..${length - 1}` });
    if (e !== length - 1) moveRow(v, h, length - 1, e);
    clearRow(v, h, length - 1);
  }
}

/**
 * Append one token into the spare row of every head, in place: keys and values `[heads, 1, headDim]`,
 * `positions` one per head; count 1, score 0 (the contract's new-slot defaults). Returns false (and
 * changes nothing) when the layer has no spare row, the backend is not writable, or more than one token
 * is appended: the caller then compacts and appends functionally.
 */
export function appendInPlace<T>(k: KVKernels<T>, layer: LayerCache<T>, keys: T, values: T, positions: Int32Array): boolean {
  const v = layerViews(k, layer);
  if (!v || !hasSpareRow(v) || positions.length !== v.heads || k.shapeOf(keys)[1] !== 1) return false;
  // Only read: the new token's rows may share memory with the model's tensors.
  const kv = k.editView!(keys, false);
  const vv = k.editView!(values, false);
  if (!kv || !vv) return false;
  const kd = kv.data as Float32Array;
  const vd = vv.data as Float32Array;
  const { heads, length: L, headDim: D } = v;
  for (let h = 0; h < heads; h++) {
    const i = h * L + L - 1;
    v.keys.set(kd.subarray(h * D, (h + 1) * D), i * D);
    v.values.set(vd.subarray(h * D, (h + 1) * D), i * D);
    v.positions[i] = positions[h]!;
    v.counts[i] = 1;
    v.scores[i] = 0;
  }
  return true;
}

/**
 * The slots of an in-place cache back in the order every other reader expects: live slots (count > 0)
 * sorted by position (ties keep row order), spare rows dropped, as one gather into a new layer. Returns
 * `layer` itself when it already is in order (always on backends without `editView`). Every head must
 * hold the same number of live slots.
 * @throws ShapeError when heads hold different numbers of live slots.
 */
export function compactLayer<T>(k: KVKernels<T>, layer: LayerCache<T>): LayerCache<T> {
  const v = layerViews(k, layer);
  if (!v || isOrdered(v)) return layer;
  const { heads, length, positions, counts } = v;
  let live = -1;
  const rowsOf: Int32Array[] = [];
  for (let h = 0; h < heads; h++) {
    const base = h * length;
    const rows: number[] = [];
    for (let j = 0; j < length; j++) if (counts[base + j] !== 0) rows.push(j);
    if (live >= 0 && rows.length !== live) throw new ShapeError(`compactLayer: head ${h} holds ${rows.length} live slots, head 0 ${live}`, { field: 'counts', head: h });
    live = rows.length;
    // A stable sort by position: rows with equal positions keep their order.
    rows.sort((a, b) => positions[base + a]! - positions[base + b]! || a - b);
    rowsOf.push(Int32Array.from(rows));
  }
  const index = new Int32Array(heads * live);
  rowsOf.forEach((r, h) => index.set(r, h * live));
  const t = k.fromHost(hostTensor('int32', [heads, live], index));
  try {
    return k.gather(layer, t);
  } finally {
    k.dispose(t);
  }
}

/** Live slots per head of a layer: its length less a spare row (what a cache manager reports). */
export function liveLength<T>(k: KVKernels<T>, layer: LayerCache<T>): number {
  const v = layerViews(k, layer);
  const { length } = cacheShape(k, layer);
  return v && hasSpareRow(v) ? length - 1 : length;
}
