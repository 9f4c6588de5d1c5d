import { cacheShape, hostTensor, resolveShare, ShapeError, type LayerCache, type PolicyContext } from '@kvfold/core';

/** What a {@link KeepChooser} receives: the cache about to be compressed and its updated scores. */
export interface KeepChooserInput<T> {
  /** The layer, its `scores` already holding this call's accumulated attention. */
  readonly layer: LayerCache<T>;
  /** Host copy of `layer.scores` (accumulated attention), one array per kv head. */
  readonly scores: readonly (readonly number[])[];
  /** Number of slots to keep per head. */
  readonly budget: number;
  /** The policy call's context (kernels, RNG, step, logger). */
  readonly ctx: PolicyContext<T>;
}

/**
 * Decides which slots survive: returns, per kv head, exactly `budget` distinct slot indices in
 * `[0, length)` (any order; CaM sorts them). CaM merges the values of every other slot into its kept
 * successors, so any eviction rule (H2O, StreamingLLM, a custom score) can be paired with CaM.
 */
export type KeepChooser = <T>(input: KeepChooserInput<T>) => Promise<readonly ArrayLike<number>[]> | readonly ArrayLike<number>[];

/**
 * H2O's choice (Zhang et al., NeurIPS 2023): the `recent` newest slots (a share of the budget in
 * `[0, 1)` or a count `>= 1`) plus the highest accumulated-attention slots among the older ones,
 * ranked with `kernels.topK` (ties to the lower slot).
 */
export function h2oChooser(recent: number): KeepChooser {
  return async <T>({ layer, budget, ctx }: KeepChooserInput<T>) => {
    const k = ctx.kernels;
    const { heads, length } = cacheShape(k, layer);
    const r = resolveShare(recent, budget);
    const heavy = budget - r;
    const older = length - r;
    let chosen: Int32Array | Float32Array = new Int32Array(0);
    if (heavy > 0) {
      const top = k.topK(layer.scores, heavy, 0, older);
      try {
        chosen = (await k.toHost(top)).data;
      } finally {
        k.dispose(top);
      }
    }
    const out: number[][] = [];
    for (let h = 0; h < heads; h++) {
      const row = Array.from(chosen.subarray(h * heavy, (h + 1) * heavy));
      for (let j = 0; j < r; j++) row.push(older + j);
      out.push(row);
    }
    return out;
  };
}

/**
 * StreamingLLM's choice (Xiao et al., ICLR 2024), the base policy of the official CaM code: the first
 * `sink` slots (clamped to `budget - 1`, so the newest token always stays) plus the newest slots that fill the budget.
 */
export function windowChooser(sink: number): KeepChooser {
  return <T>({ layer, budget, ctx }: KeepChooserInput<T>) => {
    const { heads, length } = cacheShape(ctx.kernels, layer);
    const s = Math.max(0, Math.min(sink, budget - 1));
    const row: number[] = [];
    for (let j = 0; j < s; j++) row.push(j);
    for (let j = s; j < budget; j++) row.push(length - budget + j);
    return Array.from({ length: heads }, () => row.slice());
  };
}

/**
 * Check a chooser's answer and return it as sorted row-major int32 `[heads, budget]`.
 * @throws ShapeError naming `keep` when a head has the wrong count, a duplicate or an out-of-range slot.
 */
export function checkKeep(keep: readonly ArrayLike<number>[], heads: number, length: number, budget: number): Int32Array {
  if (keep.length !== heads) {
    throw new ShapeError(`keep chooser returned ${keep.length} rows; expected one per kv head (${heads})`, { field: 'keep', allowed: heads });
  }
  const out = new Int32Array(heads * budget);
  for (let h = 0; h < heads; h++) {
    const given = keep[h];
    if (given.length !== budget) {
      throw new ShapeError(`keep chooser returned ${given.length} slots for head ${h}; expected exactly the budget (${budget})`, { field: 'keep', head: h, allowed: budget });
    }
    const row = new Int32Array(budget);
    for (let j = 0; j < budget; j++) {
      const v = Number(given[j]);
      if (!Number.isInteger(v) || v < 0 || v >= length) {
        throw new ShapeError(`keep chooser returned slot ${String(given[j])} for head ${h}; slots must be integers in 0..${length - 1}`, { field: 'keep', head: h, allowed: `0..${length - 1}` });
      }
      row[j] = v;
    }
    row.sort();
    for (let j = 1; j < budget; j++) {
      if (row[j] === row[j - 1]) throw new ShapeError(`keep chooser returned slot ${row[j]} twice for head ${h}; slots must be distinct`, { field: 'keep', head: h });
    }
    out.set(row, h * budget);
  }
  return out;
}

/** Upload a row-major int32 `[heads, n]` array. */
export function int32Rows<T>(ctx: PolicyContext<T>, data: Int32Array, heads: number): T {
  return ctx.kernels.fromHost(hostTensor('int32', [heads, heads === 0 ? 0 : data.length / heads], data));
}
