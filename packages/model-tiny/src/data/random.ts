import type { Rng } from '@kvfold/core';

// Draws the generators and the training script need, over @kvfold/core's seeded RNG (the project's one
// generator); these only shape its uniform numbers.

/** Uniform integer in [lo, hi] (inclusive). */
export function intIn(rng: Rng, lo: number, hi: number): number {
  return lo + rng.int(hi - lo + 1);
}

/** One element chosen uniformly. */
export function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[rng.int(items.length)]!;
}

/** Standard normal sample (Box-Muller). */
export function normal(rng: Rng): number {
  const u = 1 - rng.next();
  const v = rng.next();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}
