/**
 * @packageDocumentation
 * Export checkpoints `@kvfold/runtime` loads (Llama, Mistral, Qwen2) to ONNX decoders in the layout
 * transformers.js and Hugging Face exports use (`past_key_values.{i}.key|value` in, `present.{i}.key|value`
 * out), with `attention_sums.{i}` outputs so kvfold policies observe attention from the graph itself and
 * optional `past_log_counts.{i}` inputs for proportional attention; and rewrite third-party plain-op
 * decoder graphs to expose the same `attention_sums` outputs.
 */
export { buildDecoderGraph, DIMS, IO, type AttentionLayout, type DecoderGraphOptions } from './decoder-graph.js';
export { exportOnnx, TOKENIZER_FILES, type ExportOptions, type ExportProgress, type ExportResult } from './export.js';
export { byteTokenizerFiles, byteToUnicode, specialTokenName, type ByteSpecialTokens, type ByteTokenizerFiles } from './tokenizer-files.js';
export {
  exposeAttention,
  exposeAttentionFile,
  FusedAttentionError,
  FUSED_ATTENTION_OPS,
  type ExposeAttentionFileResult,
  type ExposeAttentionOptions,
  type ExposeAttentionResult,
} from './expose-attention.js';
