import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AutoModelForCausalLM, AutoTokenizer, env } from '@huggingface/transformers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { ConfigError, ModelError } from '@kvfold/core';
import { PASSKEY_QUESTION, modelTinyPath, passkeySample } from '@kvfold/model-tiny';
import { exportOnnx } from '@kvfold/onnx-export';
import { answer, runtimeEngine, type AnswerEngine } from '@kvfold/pipeline';
import { KVMergerPolicy } from '@kvfold/policy-kvmerger';
import { generate, loadModel, type Model } from '@kvfold/runtime';
import { generateCompressed, transformersEngine, type TransformersModelLike, type TransformersTokenizerLike } from '../src/index.js';

/** A passkey prompt of the embedded model, split where its question starts. */
function passkey(seed: number, length: number) {
  const s = passkeySample({ length, depth: 0.5, seed });
  return { context: s.prompt.slice(0, s.prompt.length - PASSKEY_QUESTION.length), question: PASSKEY_QUESTION, key: s.answer };
}

describe("@kvfold/pipeline's answer() on transformers.js through transformersEngine", () => {
  let root: string;
  let model: TransformersModelLike;
  let tokenizer: TransformersTokenizerLike;
  let rt: Model;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'kvfold-tjs-engine-'));
    await exportOnnx(modelTinyPath, join(root, 'tiny'));
    env.allowRemoteModels = false;
    env.localModelPath = root;
    tokenizer = (await AutoTokenizer.from_pretrained('tiny')) as unknown as TransformersTokenizerLike;
    model = (await AutoModelForCausalLM.from_pretrained('tiny')) as unknown as TransformersModelLike;
    rt = await loadModel(modelTinyPath, { engine: 'cpu' });
  });
  afterAll(async () => {
    rt?.dispose();
    await rm(root, { recursive: true, force: true });
  });

  // KVMerger does not merge in layer 0, where adjacent key cosines tie exactly and float rounding picks
  // the merged link differently on each runtime (see parity.test.ts).
  const cases: [string, number, number, Record<string, unknown>][] = [
    ['kvmerger', 0.35, 21, { skipLayers: [0] }],
    ['h2o', 0.5, 22, {}],
    ['window', 0.2, 24, {}],
  ];
  it.each(cases)('%s at %s: the same answer, tokens, kept slots and cache bytes as the tfjs runtime', async (policy, budget, seed, policyOptions) => {
    const { context, question, key } = passkey(seed, 384);
    const engine: AnswerEngine = transformersEngine({ model, tokenizer, kernels: createReferenceKernels() });
    const ours = await answer({ context, question, policy, policyOptions, budget, model: engine });
    const runtime = await answer({ context, question, policy, policyOptions, budget, model: runtimeEngine(rt) });
    expect(ours.engine).toMatch(/^@kvfold\/transformers \(transformers\.js; policy kernels: reference/);
    expect({ ...ours, engine: '', seconds: 0 }).toEqual({ ...runtime, engine: '', seconds: 0 });
    expect(ours.contextTokens).toBe(context.length + 1); // bytes + BOS: the question is not part of the compressed context
    expect(ours.questionTokens).toBe(question.length);
    if (policy === 'kvmerger') expect(ours.answer).toBe(`${key}.`);
  });

  it('generateCompressed with a context compresses before reading the prompt, as the runtime\'s generate does', async () => {
    const { context, question } = passkey(31, 320);
    const mine = await generateCompressed({ model, tokenizer, kernels: createReferenceKernels(), policy: new KVMergerPolicy(), budget: 0.35, context, prompt: question, maxNewTokens: 8 });
    const theirs = await generate({ model: rt, policy: new KVMergerPolicy(), budget: 0.35, context, prompt: question, maxNewTokens: 8 });
    expect(mine.tokens).toEqual(theirs.tokens);
    expect(mine.contextTokens).toBe(theirs.contextTokens);
    expect(mine.promptTokens).toBe(question.length);
    expect(mine.cache.budget).toBe(Math.round(0.35 * mine.contextTokens));
    expect(mine.cache.lengths).toEqual(theirs.cache.lengths);
    // Without a context the whole text is compressed at once: another budget and other slot counts.
    const whole = await generateCompressed({ model, tokenizer, kernels: createReferenceKernels(), policy: new KVMergerPolicy(), budget: 0.35, prompt: context + question, maxNewTokens: 8 });
    expect(whole.contextTokens).toBe(0);
    expect(whole.cache.budget).toBe(Math.round(0.35 * (context.length + question.length + 1)));
  });

  it('refuses a context of another kind than the prompt, and a model it cannot drive when the engine is made', async () => {
    const base = { model, tokenizer, kernels: createReferenceKernels(), maxNewTokens: 1 };
    await expect(generateCompressed({ ...base, context: [1, 2, 3], prompt: 'text' })).rejects.toThrow(ConfigError);
    await expect(generateCompressed({ ...base, context: 'text', prompt: [1, 2] })).rejects.toThrow(/\/context/);
    expect(() => transformersEngine({ model: { sessions: {}, config: {} }, tokenizer, kernels: createReferenceKernels() })).toThrow(ModelError);
  });
});
