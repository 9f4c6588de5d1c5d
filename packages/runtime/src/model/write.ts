import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LlamaConfig } from './config.js';
import { encodeSafetensors, type TensorToWrite, type WritableDType } from './safetensors.js';
import { weightsToTensors, type LlamaWeights } from './weights.js';

/** Options of {@link writeCheckpoint}. */
export interface WriteCheckpointOptions {
  /** Stored dtype of every tensor. Default `F32`. */
  readonly dtype?: WritableDType;
  /** Split tensors over this many shards with a `model.safetensors.index.json`. Default 1 (one file, no index). */
  readonly shards?: number;
}

/** The HF `config.json` document of a config (snake_case keys; the `kvfold` extension when bytes). */
export function configToJson(config: LlamaConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {
    architectures: [{ llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' }[config.modelType]],
    model_type: config.modelType,
    vocab_size: config.vocabSize,
    hidden_size: config.hiddenSize,
    intermediate_size: config.intermediateSize,
    num_hidden_layers: config.layers,
    num_attention_heads: config.heads,
    num_key_value_heads: config.kvHeads,
    head_dim: config.headDim,
    hidden_act: 'silu',
    rope_theta: config.ropeTheta,
    rms_norm_eps: config.rmsNormEps,
    tie_word_embeddings: config.tieWordEmbeddings,
    max_position_embeddings: config.maxPositionEmbeddings,
    torch_dtype: 'float32',
  };
  if (config.modelType === 'llama') out.attention_bias = config.attentionBias;
  if (config.slidingWindow !== undefined) out.sliding_window = config.slidingWindow;
  if (config.bosTokenId !== undefined) out.bos_token_id = config.bosTokenId;
  if (config.eosTokenIds.length > 0) out.eos_token_id = config.eosTokenIds.length === 1 ? config.eosTokenIds[0] : [...config.eosTokenIds];
  if (config.ropeScaling?.type === 'linear') out.rope_scaling = { rope_type: 'linear', factor: config.ropeScaling.factor };
  if (config.ropeScaling?.type === 'llama3') {
    const s = config.ropeScaling;
    out.rope_scaling = { rope_type: 'llama3', factor: s.factor, low_freq_factor: s.lowFreqFactor, high_freq_factor: s.highFreqFactor, original_max_position_embeddings: s.originalMaxPositionEmbeddings };
  }
  if (config.tokenizer === 'bytes') out.kvfold = { tokenizer: 'bytes' };
  return out;
}

/**
 * Write a model folder in the HF layout: `config.json` plus `model.safetensors`, or `shards` files
 * `model-0000i-of-0000n.safetensors` with a `model.safetensors.index.json`. Used by tests and tools.
 */
export async function writeCheckpoint(folder: string, config: LlamaConfig, weights: LlamaWeights, options: WriteCheckpointOptions = {}): Promise<void> {
  await mkdir(folder, { recursive: true });
  await writeFile(join(folder, 'config.json'), JSON.stringify(configToJson(config), null, 2) + '\n');
  const dtype = options.dtype ?? 'F32';
  const entries = [...weightsToTensors(weights, config)].map(([name, w]): [string, TensorToWrite] => [name, { shape: w.shape, data: w.data, dtype }]);
  const shards = Math.max(1, Math.min(options.shards ?? 1, entries.length));
  if (shards === 1) {
    await writeFile(join(folder, 'model.safetensors'), encodeSafetensors(Object.fromEntries(entries), { format: 'pt' }));
    return;
  }
  const per = Math.ceil(entries.length / shards);
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let s = 0; s < shards; s++) {
    const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = entries.slice(s * per, (s + 1) * per);
    for (const [name, t] of part) {
      weightMap[name] = file;
      total += t.data.length * { F32: 4, F64: 8, F16: 2, BF16: 2 }[dtype];
    }
    await writeFile(join(folder, file), encodeSafetensors(Object.fromEntries(part), { format: 'pt' }));
  }
  await writeFile(join(folder, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + '\n');
}
