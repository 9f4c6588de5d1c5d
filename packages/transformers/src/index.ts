/**
 * @packageDocumentation
 * Generate with a transformers.js (`@huggingface/transformers` 4.x) causal LM while a kvfold policy
 * compresses its KV cache: {@link generateCompressed} for one call, {@link CompressedSession} to feed
 * tokens yourself, {@link transformersEngine} to answer questions with `@kvfold/pipeline`'s `answer()`. The decoder must take `position_ids` and `past_key_values.{i}.key|value`; policies
 * that need attention need the `attention_sums.{i}` (and, for `lastAttention`, `attention_last.{i}`)
 * outputs that `kvfold export-onnx` writes and `kvfold onnx expose-attention` adds to plain-op graphs.
 * Batch size 1.
 */
export { generateCompressed, type GenerateCompressedOptions, type GenerateCompressedResult } from './generate.js';
export { CompressedSession, type CompressedSessionOptions } from './session.js';
export { transformersEngine, type TransformersEngineOptions } from './engine.js';
export { bridgeFor, ortTensor, type TensorBridge } from './bridge.js';
export {
  checkPolicyFits,
  inspectDecoder,
  type DecoderInfo,
  type DecoderSessionLike,
  type InputMetadataLike,
  type OrtTensorLike,
  type TransformersModelLike,
  type TransformersTokenizerLike,
} from './model.js';
