// Issue 10, item 11: the untyped errors found are typed now.
import { describe, expect, it } from 'vitest';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { ErrorCode, createContext, resolveBudget, type Budget } from '@kvfold/core';
import { createKVFold } from '@kvfold/bench';
import { generate } from '@kvfold/runtime';
import { caught } from './helpers.js';

describe('item 11: untyped errors', () => {
  it('resolveBudget of a string, null, an empty object, or against a NaN or fractional prompt length', async () => {
    for (const [budget, length] of [['half', 10], [null, 10], [{}, 10], [[0.5], 10], [0.5, Number.NaN], [0.5, 2.5], [0.5, 0], [{ tokens: 2 }, -1]] as [unknown, number][]) {
      const e = await caught(() => resolveBudget(budget as Budget, length));
      expect(e.code, JSON.stringify([budget, length])).toBe(ErrorCode.Budget);
    }
    expect(resolveBudget(0.5, 10)).toBe(5);
  });

  it('generate() with stop that is not a list (found while measuring the guard) is a ConfigError', async () => {
    const e = await caught(() => generate({ model: {} as never, prompt: 'a', stop: 'x' as never }));
    expect(e.code).toBe(ErrorCode.Config);
    expect(e.message).toMatch(/\/stop: must be a list of stop strings or token ids/);
  });

  it('prefill(null, ...), step with no observations object and no context are typed errors', async () => {
    const kv = await createKVFold();
    const k = createReferenceKernels();
    const ctx = createContext({ kernels: k, budget: 1, promptLength: 1 });
    // `chain` cannot be built without the policies it chains.
    const required: Record<string, Record<string, unknown>> = { chain: { policies: [{ name: 'window' }] } };
    for (const name of kv.policies.names()) {
      const p = kv.policy(name, required[name] ?? {});
      expect((await caught(() => p.prefill(null as never, {}, ctx))).code, name).toBe(ErrorCode.Shape);
      expect((await caught(() => p.prefill(undefined as never, {}, ctx))).code, name).toBe(ErrorCode.Shape);
      expect((await caught(() => p.step({} as never, {}, ctx))).code, name).toBe(ErrorCode.Shape);
      expect((await caught(() => p.prefill(null as never, {}, null as never))).code, name).toBe(ErrorCode.Shape);
    }
  });
});
