import { BudgetError } from './errors.js';

/**
 * How many slots a layer may keep after prefill: a ratio of the prompt length (`{ ratio: 0.5 }` keeps
 * half) or an absolute count (`{ tokens: 512 }`). A bare number is shorthand for a ratio.
 */
export type Budget =
  | number
  | {
      /** Share of the prompt kept, in (0, 1]. */
      readonly ratio: number;
    }
  | {
      /** Slots kept, an integer from 1 to the prompt length. */
      readonly tokens: number;
    };

/**
 * Resolve a budget to a slot count for a prompt of `promptLength` tokens. A ratio rounds to the
 * nearest integer and keeps at least one slot.
 * @throws BudgetError when the ratio is outside (0, 1], the token count is not a positive integer, or
 *   the token count is larger than the prompt.
 */
export function resolveBudget(budget: Budget, promptLength: number): number {
  if (typeof promptLength !== 'number' || !Number.isInteger(promptLength) || promptLength < 1) {
    throw new BudgetError(`prompt length ${String(promptLength)} must be a positive integer (the tokens a ratio budget refers to)`, { field: 'promptLength', value: promptLength, allowed: 'integer >= 1' });
  }
  const spec: unknown = typeof budget === 'number' ? { ratio: budget } : budget;
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec) || !('ratio' in spec || 'tokens' in spec)) {
    throw new BudgetError(`budget ${JSON.stringify(budget) ?? String(budget)} is not a budget; give a ratio in (0, 1] (0.5 or {"ratio": 0.5}) or a slot count ({"tokens": 512})`, {
      field: 'budget',
      value: typeof budget === 'object' ? undefined : budget,
      allowed: ['number in (0, 1]', '{ ratio }', '{ tokens }'],
    });
  }
  if ('ratio' in spec) {
    const r = spec.ratio;
    if (typeof r !== 'number' || !Number.isFinite(r) || r <= 0 || r > 1) {
      throw new BudgetError(`budget ratio ${String(r)} is outside (0, 1]; use e.g. 0.5 to keep half the prompt`, { field: 'budget.ratio', value: r, allowed: '(0, 1]' });
    }
    return Math.max(1, Math.min(promptLength, Math.round(r * promptLength)));
  }
  const t = (spec as { tokens: unknown }).tokens;
  if (typeof t !== 'number' || !Number.isInteger(t) || t < 1) {
    throw new BudgetError(`budget tokens ${String(t)} must be a positive integer`, { field: 'budget.tokens', value: t, allowed: 'integer >= 1' });
  }
  if (t > promptLength) {
    throw new BudgetError(`budget of ${t} tokens is larger than the cache (${promptLength} tokens)`, { field: 'budget.tokens', value: t, allowed: `1..${promptLength}` });
  }
  return t;
}

/**
 * Resolve a window size given as a ratio of the budget (`0 < x < 1`) or an absolute count (`x >= 1`),
 * clamped to `[0, budget]`. Policies use it for recent windows and heavy-hitter shares.
 */
export function resolveShare(share: number, budget: number): number {
  const n = share < 1 ? Math.round(share * budget) : Math.floor(share);
  return Math.max(0, Math.min(budget, n));
}
