/** Architecture of the tiny model (the fields the training code needs). */
export interface TinyModelConfig {
  /** Vocabulary size: 256 byte ids plus special ids above 255. */
  vocabSize: number;
  /** Residual width. */
  hidden: number;
  /** SwiGLU inner width. */
  intermediate: number;
  /** Decoder blocks. */
  layers: number;
  /** Query heads. */
  heads: number;
  /** Key/value heads (grouped-query attention: heads % kvHeads === 0). */
  kvHeads: number;
  /** Per-head width (even, for rotate-half RoPE). */
  headDim: number;
  /** RoPE base. */
  ropeTheta: number;
  /** RMSNorm epsilon. */
  rmsNormEps: number;
  /** Longest context the model is meant for. */
  maxPositions: number;
}

/** Special token ids above the byte range. */
export const SPECIAL_TOKENS = {
  /** Beginning of sequence: every prompt starts with it. */
  bos: 256,
  /** End of sequence: closes an answer. */
  eos: 257,
} as const;

/** Hugging Face LlamaConfig JSON for a tiny config (tied embeddings, byte tokenizer). */
export function toHfConfig(c: TinyModelConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: c.vocabSize,
    hidden_size: c.hidden,
    intermediate_size: c.intermediate,
    num_hidden_layers: c.layers,
    num_attention_heads: c.heads,
    num_key_value_heads: c.kvHeads,
    head_dim: c.headDim,
    max_position_embeddings: c.maxPositions,
    rope_theta: c.ropeTheta,
    rms_norm_eps: c.rmsNormEps,
    tie_word_embeddings: true,
    hidden_act: 'silu',
    attention_bias: false,
    mlp_bias: false,
    bos_token_id: SPECIAL_TOKENS.bos,
    eos_token_id: SPECIAL_TOKENS.eos,
    torch_dtype: 'float32',
    kvfold: {
      tokenizer: 'bytes',
      special_tokens: { bos: SPECIAL_TOKENS.bos, eos: SPECIAL_TOKENS.eos },
      note: 'token id = UTF-8 byte value for ids 0..255; prompts start with bos (256); eos (257) ends an answer',
      ...extra,
    },
  };
}

/** Read a Hugging Face config.json (its numeric fields) back into the training config. */
export function fromHfConfig(j: Record<string, number>): TinyModelConfig {
  return {
    vocabSize: j.vocab_size,
    hidden: j.hidden_size,
    intermediate: j.intermediate_size,
    layers: j.num_hidden_layers,
    heads: j.num_attention_heads,
    kvHeads: j.num_key_value_heads,
    headDim: j.head_dim,
    ropeTheta: j.rope_theta,
    rmsNormEps: j.rms_norm_eps,
    maxPositions: j.max_position_embeddings,
  };
}
