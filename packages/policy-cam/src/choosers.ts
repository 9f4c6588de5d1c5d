import { ShapeError, type LayerCache, type PolicyContext } from '@kvfold/core';

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
 * successors, so any eviction rule can be paired with CaM; without one, CaM uses the shared selection
 * (`evict: 'h2o'` or `'window'`).
 */
export type KeepChooser = <T>(input: KeepChooserInput<T>) => Promise<readonly ArrayLike<number>[]> | readonly ArrayLike<number>[];

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
