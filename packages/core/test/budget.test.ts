import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BudgetError, ErrorCode, resolveBudget, resolveShare } from '@kvfold/core';

describe('resolveBudget', () => {
  it('resolves ratios to rounded slot counts, at least one', () => {
    expect(resolveBudget(0.5, 100)).toBe(50);
    expect(resolveBudget({ ratio: 0.35 }, 10)).toBe(4); // 3.5 rounds to 4
    expect(resolveBudget(0.01, 10)).toBe(1);
    expect(resolveBudget(1, 7)).toBe(7);
  });
  it('passes absolute token counts through', () => {
    expect(resolveBudget({ tokens: 12 }, 100)).toBe(12);
  });
  it.each([0, -0.1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])('rejects ratio %s with KVF_BUDGET', (r) => {
    const err = (() => { try { resolveBudget(r, 10); } catch (e) { return e; } })() as BudgetError;
    expect(err).toBeInstanceOf(BudgetError);
    expect(err.code).toBe(ErrorCode.Budget);
    expect(err.message).toMatch(/outside \(0, 1\]/);
    expect(err.details.allowed).toBe('(0, 1]');
  });
  it('rejects token budgets larger than the cache, naming both sizes', () => {
    expect(() => resolveBudget({ tokens: 11 }, 10)).toThrow(/budget of 11 tokens is larger than the cache \(10 tokens\)/);
    expect(() => resolveBudget({ tokens: 2.5 }, 10)).toThrow(/must be a positive integer/);
    expect(() => resolveBudget({ tokens: 0 }, 10)).toThrow(BudgetError);
  });
  it('always lands in [1, promptLength] for valid ratios', () => {
    fc.assert(fc.property(fc.double({ min: 1e-6, max: 1, noNaN: true }), fc.integer({ min: 1, max: 100_000 }), (r, n) => {
      const b = resolveBudget(r, n);
      return Number.isInteger(b) && b >= 1 && b <= n;
    }));
  });
});

describe('resolveShare', () => {
  it('treats values below 1 as a share of the budget and others as counts, clamped', () => {
    expect(resolveShare(0.5, 10)).toBe(5);
    expect(resolveShare(3, 10)).toBe(3);
    expect(resolveShare(30, 10)).toBe(10);
    expect(resolveShare(0, 10)).toBe(0);
  });
});
