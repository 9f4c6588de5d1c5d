import { resolve } from 'node:path';
import { ConfigError, KVFold, engineAnswer, resolveBudget, type AnswerEngine, type Budget, type ConfigIssue, type KVCachePolicy, type KVFoldPlugin } from '@kvfold/core';
import { modelTinyPath } from '@kvfold/model-tiny';
import baselines from '@kvfold/policy-baselines';
import cam from '@kvfold/policy-cam';
import h2o from '@kvfold/policy-h2o';
import kvmerger from '@kvfold/policy-kvmerger';
import { generate, loadModel, type Model } from '@kvfold/runtime';

/** The policy packages kvfold ships; their policies can be named in {@link AnswerOptions.policy}. */
export const BUILTIN_POLICY_PLUGINS: readonly KVFoldPlugin[] = [baselines, h2o, cam, kvmerger];

/**
 * A model for {@link answer}: `"embedded"` (the default), a Hugging Face model folder, a loaded runtime
 * model, or an engine (`transformersEngine(...)` from `@kvfold/transformers` for a transformers.js model).
 */
export type ModelSource = 'embedded' | (string & {}) | Model | AnswerEngine;

/** Options of {@link answer}. */
export interface AnswerOptions {
  /** The long text to compress (a document, a conversation so far). */
  readonly context: string;
  /** The question, read after the context was compressed; the model's answer continues it. */
  readonly question: string;
  /** A policy name (`"kvmerger"`, `"h2o"`, `"cam"`, `"window"`, `"random"`, `"full"`, or one a plugin in `plugins` registers) or a policy object. */
  readonly policy: string | KVCachePolicy;
  /** Options of a named policy, validated against its schema. */
  readonly policyOptions?: Record<string, unknown>;
  /** Share of the context kept, in (0, 1], or `{ tokens }`. Default 0.5. */
  readonly budget?: Budget;
  /** Default `"embedded"`: the project's byte-level model from `@kvfold/model-tiny`. */
  readonly model?: ModelSource;
  /** Most tokens to generate. Default 32. */
  readonly maxNewTokens?: number;
  /** Strings that end the answer. Default `["\n"]`. */
  readonly stop?: readonly string[];
  /** More plugins whose policies `policy` may name. */
  readonly plugins?: readonly KVFoldPlugin[];
  /** Seed of the policy's random choices. Default 0. */
  readonly seed?: number;
}

/** What {@link answer} returns. */
export interface AnswerResult {
  /** The answer, trimmed. */
  readonly answer: string;
  /** The policy's name. */
  readonly policy: string;
  /** The engine that ran it. */
  readonly engine: string;
  /** Tokens of the context. */
  readonly contextTokens: number;
  /** Tokens of the question. */
  readonly questionTokens: number;
  /** Tokens generated. */
  readonly generatedTokens: number;
  /** Slots per layer the budget allows (resolved against the context). */
  readonly budgetSlots: number;
  /** Slots per layer at the end. */
  readonly keptSlots: readonly number[];
  /**
   * True when a layer ended with more slots than the budget: policies that compress only after the
   * context (KVMerger with its default `decodeInterval: 0`) keep the question's and the answer's tokens.
   */
  readonly overBudget: boolean;
  /** Cache size at the end, in bytes. */
  readonly cacheBytes: number;
  /** Wall-clock seconds of the call (loading the model the first time included). */
  readonly seconds: number;
}

/** Wrap a loaded `@kvfold/runtime` model as an {@link AnswerEngine} (greedy decoding). */
export function runtimeEngine(model: Model): AnswerEngine {
  return {
    name: `@kvfold/runtime (${model.config.modelType}, ${model.kernels.describe()})`,
    async answer(r) {
      return engineAnswer(await generate({ model, context: r.context, prompt: r.question, policy: r.policy, budget: r.budget, maxNewTokens: r.maxNewTokens, stop: r.stop, seed: r.seed }));
    },
  };
}

const loaded = new Map<string, Promise<Model>>();

/** Load a model folder once per process; later calls reuse it. */
function loadOnce(folder: string): Promise<Model> {
  let p = loaded.get(folder);
  if (!p) {
    p = loadModel(folder);
    loaded.set(folder, p);
    p.catch(() => loaded.delete(folder));
  }
  return p;
}

/** Release the models {@link answer} loaded and kept for later calls. */
export async function releaseModels(): Promise<void> {
  const models = await Promise.allSettled([...loaded.values()]);
  loaded.clear();
  for (const m of models) if (m.status === 'fulfilled') m.value.dispose();
}

function isEngine(m: unknown): m is AnswerEngine {
  return typeof m === 'object' && m !== null && typeof (m as AnswerEngine).answer === 'function';
}

function isModel(m: unknown): m is Model {
  return typeof m === 'object' && m !== null && 'decoder' in m && 'tokenizer' in m && 'kernels' in m;
}

async function engineFor(source: ModelSource): Promise<AnswerEngine> {
  if (isEngine(source)) return source;
  if (isModel(source)) return runtimeEngine(source);
  return runtimeEngine(await loadOnce(source === 'embedded' ? modelTinyPath : resolve(source)));
}

function isPolicy(p: unknown): p is KVCachePolicy {
  return typeof p === 'object' && p !== null && typeof (p as KVCachePolicy).prefill === 'function' && typeof (p as KVCachePolicy).step === 'function';
}

function check(o: AnswerOptions): { maxNewTokens: number; stop: readonly string[]; budget: Budget; seed: number } {
  const issues: ConfigIssue[] = [];
  const text = (field: 'context' | 'question') => {
    if (typeof o[field] !== 'string' || o[field].length === 0) issues.push({ path: `/${field}`, rule: 'type', message: `must be a non-empty string, got ${JSON.stringify(o[field])}`, allowed: 'non-empty string' });
  };
  text('context');
  text('question');
  if (typeof o.policy !== 'string' && !isPolicy(o.policy)) issues.push({ path: '/policy', rule: 'type', message: 'must be a policy name or a policy object (prefill and step)', allowed: 'string | KVCachePolicy' });
  const maxNewTokens = o.maxNewTokens ?? 32;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) issues.push({ path: '/maxNewTokens', rule: 'minimum', message: `must be an integer >= 1, got ${maxNewTokens}`, allowed: { minimum: 1 } });
  const stop = o.stop ?? ['\n'];
  if (!Array.isArray(stop) || !stop.every((s) => typeof s === 'string' && s.length > 0)) issues.push({ path: '/stop', rule: 'type', message: 'must be a list of non-empty strings', allowed: 'string[]' });
  const seed = o.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) issues.push({ path: '/seed', rule: 'maximum', message: `must be an integer in 0..4294967295, got ${seed}`, allowed: '0..4294967295' });
  if (issues.length > 0) throw new ConfigError(issues, 'answer options');
  return { maxNewTokens, stop, budget: o.budget ?? 0.5, seed };
}

/**
 * Compress a context with a cache policy, then answer a question about it, in one call — kvfold's
 * counterpart of kvpress's question-answering pipeline. The context is read and compressed first, so the
 * policy never sees the question (query-agnostic compression); the question is read after, and the answer
 * is decoded greedily until a stop string, the end-of-sequence token or `maxNewTokens`.
 *
 * The embedded model (the default) is a small byte-level model trained by the project on passkey
 * retrieval and associative recall: ask it the way it was trained (`PASSKEY_QUESTION` from
 * `@kvfold/model-tiny`); for open questions pass a Hugging Face model folder as `model`.
 * Loaded models are kept for later calls; {@link releaseModels} frees them.
 * @throws ConfigError naming the option for invalid options or policy options; UnknownPolicyError for a
 *   policy name nothing registers; BudgetError for a budget outside (0, 1]; ModelError for a missing or
 *   invalid model folder.
 */
export async function answer(options: AnswerOptions): Promise<AnswerResult> {
  const t0 = performance.now();
  const { maxNewTokens, stop, budget, seed } = check(options);
  const policy = isPolicy(options.policy)
    ? options.policy
    : KVFold.create({ plugins: [...BUILTIN_POLICY_PLUGINS, ...(options.plugins ?? [])] }).policy(options.policy as string, options.policyOptions ?? {});
  const engine = await engineFor(options.model ?? 'embedded');
  const out = await engine.answer({ context: options.context, question: options.question, policy, budget, maxNewTokens, stop, seed });
  const budgetSlots = resolveBudget(budget, out.contextTokens);
  return {
    answer: out.text.trim(),
    policy: policy.name,
    engine: engine.name,
    contextTokens: out.contextTokens,
    questionTokens: out.questionTokens,
    generatedTokens: out.generatedTokens,
    budgetSlots,
    keptSlots: out.keptSlots,
    overBudget: out.keptSlots.some((n) => n > budgetSlots),
    cacheBytes: out.cacheBytes,
    seconds: (performance.now() - t0) / 1000,
  };
}
