import { MissingObservationError, ModelError, type GroupReduction, type KVCachePolicy } from '@kvfold/core';

/**
 * The parts of transformers.js (`@huggingface/transformers` 4.x) objects the adapter uses, typed
 * structurally so the public API names no transformers.js internals.
 * @module
 */

/** An onnxruntime tensor as transformers.js's sessions return them. */
export interface OrtTensorLike {
  /** Element type (`float32`, `int64`, ...). */
  readonly type: string;
  /** Dimensions. */
  readonly dims: readonly number[];
  /** Elements, row-major. */
  readonly data: unknown;
  /** A tensor of the same data under other dimensions (onnxruntime-common's view; no copy). */
  reshape?(dims: readonly number[]): OrtTensorLike;
  /** Release the data. */
  dispose?(): void;
}

/** Metadata of a session input, as onnxruntime-node 1.30 reports it. */
export interface InputMetadataLike {
  /** Input name. */
  readonly name: string;
  /** Dimensions: numbers, or names of symbolic dimensions. */
  readonly shape?: readonly (number | string)[];
}

/** The onnxruntime-node `InferenceSession` of a transformers.js model. */
export interface DecoderSessionLike {
  /** Input names. */
  readonly inputNames: readonly string[];
  /** Output names. */
  readonly outputNames: readonly string[];
  /** Input shapes and types. */
  readonly inputMetadata?: readonly InputMetadataLike[];
  /** Run the model: feeds by name, optionally only the named outputs. */
  run(feeds: Record<string, unknown>, fetches?: readonly string[]): Promise<Record<string, OrtTensorLike>>;
}

/** A transformers.js causal LM (`AutoModelForCausalLM.from_pretrained(...)`): its sessions and config. */
export interface TransformersModelLike {
  /** Sessions by name; decoder-only models have `model`. */
  readonly sessions: Readonly<Record<string, DecoderSessionLike>>;
  /** The parsed config.json (a transformers.js `PretrainedConfig`). */
  readonly config: object;
  /** The parsed generation_config.json, when the folder has one. */
  readonly generation_config?: object | null;
}

/** A transformers.js tokenizer (`AutoTokenizer.from_pretrained(...)`). */
export interface TransformersTokenizerLike {
  /** Encode text to ids, special tokens (BOS) added as the tokenizer's template says. */
  encode(text: string): number[];
  /** Decode ids to text. */
  decode(ids: number[], options?: { skip_special_tokens?: boolean }): string;
}

/** What {@link inspectDecoder} found in a model's decoder session. */
export interface DecoderInfo {
  /** The session. */
  readonly session: DecoderSessionLike;
  /** Decoder layers (pairs of `past_key_values.{i}.key|value` inputs). */
  readonly layers: number;
  /** kv heads. */
  readonly kvHeads: number;
  /** Head dimension. */
  readonly headDim: number;
  /** Every layer has an `attention_sums.{i}` output. */
  readonly attentionSums: boolean;
  /** Every layer has an `attention_last.{i}` output (the last query's attention). */
  readonly attentionLast: boolean;
  /** GQA reduction the graph applied to `attention_sums` (from config.json's `kvfold_onnx`; `mean` otherwise). */
  readonly groupReduction: GroupReduction;
  /** Every layer has a `past_log_counts.{i}` input. */
  readonly logCounts: boolean;
  /** The session takes `num_logits_to_keep`. */
  readonly numLogitsToKeep: boolean;
  /** The session takes `use_cache_branch` (older merged Optimum decoders). */
  readonly useCacheBranch: boolean;
  /** End-of-sequence ids from config.json and generation_config.json. */
  readonly eosTokenIds: readonly number[];
}

const REQUIRED = ['input_ids', 'attention_mask', 'position_ids'] as const;
const KNOWN = new Set<string>([...REQUIRED, 'num_logits_to_keep', 'use_cache_branch']);

function ids(v: unknown): number[] {
  const list = Array.isArray(v) ? v : v === undefined || v === null ? [] : [v];
  return list.filter((x): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0);
}

/**
 * Read a transformers.js model's decoder interface and check that kvfold can drive it: inputs
 * `input_ids`, `attention_mask`, `position_ids` (true positions are what make a compressed cache work),
 * `past_key_values.{i}.key|value` with outputs `present.{i}.key|value`.
 * @throws ModelError naming the missing or unexpected input or output.
 */
export function inspectDecoder(model: TransformersModelLike): DecoderInfo {
  const session = model.sessions?.model;
  if (!session) {
    const names = Object.keys(model.sessions ?? {});
    throw new ModelError(`the model has no "model" session (it has ${names.length ? names.map((n) => JSON.stringify(n)).join(', ') : 'none'}); kvfold drives decoder-only models loaded with AutoModelForCausalLM`, { field: 'model.sessions', allowed: ['model'] });
  }
  const inputs = new Set(session.inputNames);
  const outputs = new Set(session.outputNames);
  for (const name of REQUIRED) {
    if (!inputs.has(name)) {
      const why = name === 'position_ids' ? ': a compressed cache is shorter than the sequence, so positions must be given explicitly' : '';
      throw new ModelError(`the decoder has no "${name}" input${why}`, { field: 'inputs', missing: name });
    }
  }
  let layers = 0;
  while (inputs.has(`past_key_values.${layers}.key`)) layers++;
  if (layers === 0) throw new ModelError('the decoder has no past_key_values.0.key input; export it with a KV cache (kvfold export-onnx, or Optimum with --task text-generation-with-past)', { field: 'inputs', missing: 'past_key_values.0.key' });
  let sums = 0;
  let last = 0;
  let logCounts = 0;
  for (let i = 0; i < layers; i++) {
    for (const n of [`past_key_values.${i}.value`]) if (!inputs.has(n)) throw new ModelError(`the decoder has no "${n}" input`, { field: 'inputs', missing: n });
    for (const n of [`present.${i}.key`, `present.${i}.value`]) if (!outputs.has(n)) throw new ModelError(`the decoder has no "${n}" output`, { field: 'outputs', missing: n });
    if (outputs.has(`attention_sums.${i}`)) sums++;
    if (outputs.has(`attention_last.${i}`)) last++;
    if (inputs.has(`past_log_counts.${i}`)) logCounts++;
  }
  for (const n of inputs) {
    if (!KNOWN.has(n) && !/^past_key_values\.\d+\.(key|value)$/.test(n) && !/^past_log_counts\.\d+$/.test(n)) {
      throw new ModelError(`the decoder has an input kvfold does not know how to feed: "${n}"`, { field: 'inputs', unexpected: n });
    }
  }
  const cfg = model.config as Record<string, unknown>;
  const meta = session.inputMetadata?.find((m) => m.name === 'past_key_values.0.key')?.shape;
  const heads = typeof cfg.num_attention_heads === 'number' ? cfg.num_attention_heads : undefined;
  const kvHeads = typeof meta?.[1] === 'number' ? meta[1] : typeof cfg.num_key_value_heads === 'number' ? cfg.num_key_value_heads : heads;
  const headDim =
    typeof meta?.[3] === 'number' ? meta[3] : typeof cfg.head_dim === 'number' ? cfg.head_dim : typeof cfg.hidden_size === 'number' && heads ? cfg.hidden_size / heads : undefined;
  if (!kvHeads || !headDim || !Number.isInteger(kvHeads) || !Number.isInteger(headDim)) {
    throw new ModelError('cannot tell the kv heads and head dimension: neither the session metadata nor config.json (num_key_value_heads, head_dim) give them', { field: 'config.num_key_value_heads' });
  }
  const exportInfo = cfg.kvfold_onnx as { attention_sums?: { group_reduction?: unknown } | null } | undefined;
  const red = exportInfo?.attention_sums?.group_reduction;
  const groupReduction: GroupReduction = red === 'max' || red === 'sum' ? red : 'mean';
  const gen = (model.generation_config ?? {}) as Record<string, unknown>;
  return {
    session,
    layers,
    kvHeads,
    headDim,
    attentionSums: sums === layers,
    attentionLast: last === layers,
    groupReduction,
    logCounts: logCounts === layers,
    numLogitsToKeep: inputs.has('num_logits_to_keep'),
    useCacheBranch: inputs.has('use_cache_branch'),
    eosTokenIds: [...new Set([...ids(cfg.eos_token_id), ...ids(gen.eos_token_id)])],
  };
}

/**
 * Refuse, before any work, a policy that needs observations this decoder cannot give: `attention` needs
 * the `attention_sums.{i}` outputs, `lastAttention` the `attention_last.{i}` outputs; `queries` are never
 * available from a graph.
 * @throws MissingObservationError naming the policy and the observation.
 */
export function checkPolicyFits(policy: KVCachePolicy | undefined, info: DecoderInfo): void {
  if (!policy) return;
  for (const need of policy.needs) {
    if ((need === 'attention' && info.attentionSums) || (need === 'lastAttention' && info.attentionLast)) continue;
    const err = new MissingObservationError(policy.name, need);
    const output = need === 'attention' ? 'attention_sums' : 'attention_last';
    const hint =
      need === 'queries'
        ? 'an ONNX decoder exposes attention, not its queries; "queries" is not available on the transformers.js path'
        : `this ONNX decoder has no ${output}.{i} outputs: export it with \`kvfold export-onnx\`, or add them with \`kvfold onnx expose-attention\` (plain MatMul/Softmax graphs), or use a policy that needs no attention (full, window, random)`;
    throw Object.assign(err, { message: `policy "${policy.name}" needs observed.${need}, but ${hint}` });
  }
}
