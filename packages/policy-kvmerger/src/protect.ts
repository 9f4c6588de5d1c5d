import { hostTensor, selectSlots, type HostScratch, type KVKernels } from '@kvfold/core';
import { HEAVY, RECENT, UNPROTECTED, headMean } from './plan.js';

/** Input of {@link protectSlots}. */
export interface ProtectInput {
  /** kv heads. */
  readonly heads: number;
  /** Slots per head. */
  readonly length: number;
  /** Recent-window size in slots. */
  readonly recent: number;
  /** Heavy hitters in slots. */
  readonly heavy: number;
  /** One layout for every head, ranked by the head-mean of the scores. */
  readonly shared: boolean;
}

/** The recent window and heavy hitters {@link protectSlots} marks on `length` slots: `recent` within the cache, `heavy` within the slots before it. */
export function protectedCounts(recent: number, heavy: number, length: number): { readonly recent: number; readonly heavy: number } {
  const r = Math.max(0, Math.min(recent, length));
  return { recent: r, heavy: Math.max(0, Math.min(heavy, length - r)) };
}

/**
 * Protection class of each slot, one array per layout (`heads` of them, or one when `shared`): the last
 * `recent` slots are {@link RECENT}, the `heavy` highest-scored of the others {@link HEAVY}. The heavy
 * hitters come from the shared selection on the backend's `topK` kernel (ties to the lower slot, NaN
 * lowest), on `scores` `[heads, length]`, or on the head-mean of `hostScores` (their host copy) when shared.
 * With `scratch` the rows are views of its `protection` array (valid until it hands that out again).
 */
export async function protectSlots<T>(k: KVKernels<T>, scores: T, hostScores: ArrayLike<number>, p: ProtectInput, scratch?: HostScratch): Promise<Uint8Array[]> {
  const { heads, length } = p;
  const { recent, heavy } = protectedCounts(p.recent, p.heavy, length);
  const layouts = p.shared && heads > 1 ? 1 : heads;
  const classes = scratch ? scratch.uint8('protection', layouts * length) : new Uint8Array(layouts * length);
  const out = Array.from({ length: layouts }, (_, l) => classes.subarray(l * length, (l + 1) * length).fill(UNPROTECTED, 0, length - recent).fill(RECENT, length - recent));
  if (heavy === 0) return out;
  if (recent + heavy === length) {
    for (const row of out) row.fill(HEAVY, 0, length - recent);
    return out;
  }
  const ranked = layouts === heads ? scores : k.fromHost(hostTensor('float32', [1, length], headMean(hostScores, heads, length)));
  try {
    const keep = await selectSlots(k, ranked, layouts, length, { budget: recent + heavy, recent, ...(scratch ? { into: scratch.int32('heavy', layouts * (recent + heavy)) } : {}) });
    out.forEach((row, l) => {
      for (let j = 0; j < heavy; j++) row[keep[l * (recent + heavy) + j]!] = HEAVY;
    });
    return out;
  } finally {
    if (ranked !== scores) k.dispose(ranked);
  }
}
