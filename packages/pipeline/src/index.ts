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
  type AnswerEngine,
  type AnswerOptions,
  type AnswerRequest,
  type AnswerResult,
  type EngineAnswer,
  type ModelSource,
} from './answer.js';
