/**
 * @packageDocumentation
 * kvfold in one call: {@link answer} compresses a context with a cache policy, then answers a question
 * about it — on the embedded model by default, on any Llama / Mistral / Qwen2 folder `@kvfold/runtime`
 * loads, or on any runtime that implements {@link AnswerEngine}.
 */
export {
  answer,
  runtimeEngine,
  releaseModels,
  BUILTIN_POLICY_PLUGINS,
  type AnswerOptions,
  type AnswerResult,
  type ModelSource,
} from './answer.js';
/** The engine contract lives in `@kvfold/core` (runtimes implement it without depending on the pipeline); re-exported here. */
export type { AnswerEngine, AnswerRequest, EngineAnswer } from '@kvfold/core';
