/**
 * @packageDocumentation
 * kvfold runtime: sessions and a cache manager that run any kvfold policy on the KV caches of a model on
 * any backend (generic over the backend's tensor type), a Llama / Mistral / Qwen2 decoder on
 * TensorFlow.js as one model implementation, a safetensors loader, tokenizers, a plain-TypeScript
 * reference forward pass, and a generation loop.
 */
export {
  parseModelConfig,
  ropeInverseFrequencies,
  ropeTables,
  MODEL_TYPES,
  MODEL_LIMITS,
  type LlamaConfig,
  type ModelType,
  type RopeScaling,
  type TokenizerKind,
} from './model/config.js';
export {
  Checkpoint,
  SafetensorsFile,
  parseSafetensorsHeader,
  decodeTensorBytes,
  encodeSafetensors,
  writeSafetensors,
  floatToHalfBits,
  floatToBFloat16Bits,
  READABLE_DTYPES,
  MAX_SAFETENSORS_HEADER,
  type CheckpointEntry,
  type LoadedTensor,
  type ReadableDType,
  type SafetensorsEntry,
  type SafetensorsHeader,
  type TensorToWrite,
  type WritableDType,
} from './model/safetensors.js';
export {
  tensorNames,
  linearShapes,
  expectedTensors,
  loadWeights,
  weightsToTensors,
  randomWeights,
  type HostWeight,
  type LayerWeights,
  type Linear,
  type LinearName,
  type LlamaWeights,
} from './model/weights.js';
export { writeCheckpoint, configToJson, type WriteCheckpointOptions } from './model/write.js';
export { MODEL_JSON_LIMITS, readModelJson } from './model/json.js';
export { loadCheckpoint, type LoadedCheckpoint } from './model/folder.js';
export { LlamaDecoder, type DecoderOptions, type ForwardOptions } from './model/decoder.js';
export { referenceForward, reduceGroups, type ReferenceOptions, type ReferenceResult } from './reference/forward.js';
// The cache manager lives in core, shared with @kvfold/transformers; re-exported for existing imports.
export { CacheManager, type AttentionHooks, type CacheManagerOptions } from '@kvfold/core';
export { byteTokenizer, huggingFaceTokenizer, loadTokenizer, splitTokens, type ByteTokenizerOptions, type SplitTokens, type TextTokenizer } from './tokenizer.js';
export { Session, createModel, type Decoder, type FeedOptions, type Logits, type Model, type ModelInit, type SessionOptions, type TfjsModel } from './session.js';
export {
  generate,
  loadModel,
  sampleToken,
  type FinishReason,
  type GenerateOptions,
  type GenerateResult,
  type LoadModelOptions,
  type SamplingOptions,
  type TfjsEngine,
  type TokenEvent,
} from './generate.js';
