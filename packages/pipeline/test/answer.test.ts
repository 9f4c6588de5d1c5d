import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, ErrorCode, KVFold, KVFoldError } from '@kvfold/core';
import { PASSKEY_QUESTION, modelTinyPath, passkeySample } from '@kvfold/model-tiny';
import h2o from '@kvfold/policy-h2o';
import { loadModel } from '@kvfold/runtime';
import { answer, releaseModels, type AnswerEngine, type AnswerRequest } from '../src/index.js';

/** A passkey prompt of the embedded model, split where its question starts. */
function passkey(seed: number, length = 512) {
  const s = passkeySample({ length, depth: 0.5, seed });
  return { context: s.prompt.slice(0, s.prompt.length - PASSKEY_QUESTION.length), question: PASSKEY_QUESTION, key: s.answer };
}

afterAll(releaseModels);

describe('answer', () => {
  it('answers a passkey question on the embedded model after KVMerger kept 35% of the context, and says it ended over budget', async () => {
    const { context, question, key } = passkey(11);
    const r = await answer({ context, question, policy: 'kvmerger', budget: 0.35 });
    expect(r.answer).toBe(`${key}.`);
    expect(r.policy).toBe('kvmerger');
    expect(r.contextTokens).toBe(context.length + 1); // bytes + BOS
    expect(r.questionTokens).toBe(question.length);
    expect(r.budgetSlots).toBe(Math.round(0.35 * r.contextTokens));
    // KVMerger compresses once, after the context (decodeInterval 0): the question and answer stay on top.
    expect(r.keptSlots.every((n) => n > r.budgetSlots)).toBe(true);
    expect(r.overBudget).toBe(true);
    expect(r.cacheBytes).toBeGreaterThan(0);
  });

  it('keeps an evicting policy within the budget, takes policy options, a policy object and a loaded model', async () => {
    const { context, question } = passkey(12);
    const evicting = await answer({ context, question, policy: 'h2o', policyOptions: { recent: 16 }, budget: 0.35 });
    expect(evicting.overBudget).toBe(false);
    expect(evicting.keptSlots.every((n) => n === evicting.budgetSlots)).toBe(true);
    const model = await loadModel(modelTinyPath);
    try {
      const policy = KVFold.create({ plugins: [h2o] }).policy('h2o', { recent: 16 });
      const same = await answer({ context, question, policy, budget: 0.35, model });
      expect(same.answer).toBe(evicting.answer);
      expect(same.keptSlots).toEqual(evicting.keptSlots);
    } finally {
      model.dispose();
    }
  });

  it('hands an AnswerEngine the resolved request, so another runtime can run the same call', async () => {
    const seen: AnswerRequest[] = [];
    const engine: AnswerEngine = {
      name: 'fake',
      async answer(r) {
        seen.push(r);
        return { text: ' 42\n', contextTokens: 100, questionTokens: 5, generatedTokens: 3, keptSlots: [20, 20], cacheBytes: 640 };
      },
    };
    const r = await answer({ context: 'some context', question: 'q?', policy: 'window', budget: { tokens: 20 }, model: engine, stop: ['.'], maxNewTokens: 7, seed: 3 });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ context: 'some context', question: 'q?', budget: { tokens: 20 }, stop: ['.'], maxNewTokens: 7, seed: 3 });
    expect(seen[0]!.policy.name).toBe('window');
    expect(r).toMatchObject({ answer: '42', engine: 'fake', budgetSlots: 20, overBudget: false, contextTokens: 100 });
  });

  it('rejects bad options with typed errors naming the field', async () => {
    const engine: AnswerEngine = { name: 'never', answer: () => Promise.reject(new Error('must not run')) };
    const err = await answer({ context: '', question: 7 as unknown as string, policy: 'h2o', maxNewTokens: 0, model: engine }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    const paths = (err as ConfigError).issues.map((i) => i.path);
    expect(paths).toEqual(expect.arrayContaining(['/context', '/question', '/maxNewTokens']));
    const unknown = await answer({ context: 'c', question: 'q', policy: 'snapkv', model: engine }).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(KVFoldError);
    expect((unknown as KVFoldError).code).toBe(ErrorCode.UnknownPolicy);
    const badOptions = await answer({ context: 'c', question: 'q', policy: 'h2o', policyOptions: { recent: -1 }, model: engine }).catch((e: unknown) => e);
    expect(badOptions).toBeInstanceOf(ConfigError);
    const missing = await answer({ context: 'c', question: 'q', policy: 'h2o', model: '/nonexistent/model/folder' }).catch((e: unknown) => e);
    expect((missing as KVFoldError).code).toBe(ErrorCode.Model);
  });
});
