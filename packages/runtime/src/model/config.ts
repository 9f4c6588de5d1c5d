import { ConfigError, type ConfigIssue } from '@kvfold/core';

/** Architectures whose checkpoints share the Llama decoder layout. */
export type ModelType = 'llama' | 'mistral' | 'qwen2';

/** Model types {@link parseModelConfig} accepts. */
export const MODEL_TYPES: readonly ModelType[] = ['llama', 'mistral', 'qwen2'];

/** How RoPE frequencies are rescaled for long contexts (the `rope_scaling` field of HF configs). */
export type RopeScaling =
  | {
      /** Linear position interpolation: positions divided by `factor`. */
      readonly type: 'linear';
      /** `rope_scaling.factor`. */
      readonly factor: number;
    }
  | {
      /** Llama 3.1 frequency-dependent scaling. */
      readonly type: 'llama3';
      /** `rope_scaling.factor`. */
      readonly factor: number;
      /** `rope_scaling.low_freq_factor`. */
      readonly lowFreqFactor: number;
      /** `rope_scaling.high_freq_factor`. */
      readonly highFreqFactor: number;
      /** `rope_scaling.original_max_position_embeddings`. */
      readonly originalMaxPositionEmbeddings: number;
    };

/** Which tokenizer a checkpoint folder uses; read from the `kvfold` extension of `config.json`. */
export type TokenizerKind = 'bytes' | 'huggingface';

/**
 * A Llama-family decoder configuration in camelCase, validated and with HF defaults filled in.
 * Field comments name the `config.json` key each one comes from.
 */
export interface LlamaConfig {
  /** `model_type`. */
  readonly modelType: ModelType;
  /** `vocab_size`. */
  readonly vocabSize: number;
  /** `hidden_size`. */
  readonly hiddenSize: number;
  /** `intermediate_size` (SwiGLU inner width). */
  readonly intermediateSize: number;
  /** `num_hidden_layers`. */
  readonly layers: number;
  /** `num_attention_heads` (query heads). */
  readonly heads: number;
  /** `num_key_value_heads`; defaults to `heads` (no GQA). */
  readonly kvHeads: number;
  /** `head_dim`; defaults to `hidden_size / num_attention_heads`. */
  readonly headDim: number;
  /** `rope_theta`; default 10000. */
  readonly ropeTheta: number;
  /** `rope_scaling`, or undefined for plain RoPE. */
  readonly ropeScaling?: RopeScaling;
  /** `rms_norm_eps`; default 1e-6. */
  readonly rmsNormEps: number;
  /** `tie_word_embeddings`: the output projection reuses the embedding matrix. Default false. */
  readonly tieWordEmbeddings: boolean;
  /** `max_position_embeddings`; default 2048. */
  readonly maxPositionEmbeddings: number;
  /**
   * Whether q/k/v projections carry biases: always for qwen2, `attention_bias` for llama. Bias tensors
   * found in a checkpoint are loaded either way; this only makes them required.
   */
  readonly attentionBias: boolean;
  /** `sliding_window` when the model actually uses one (mistral), else undefined. */
  readonly slidingWindow?: number;
  /** `bos_token_id`, when given. */
  readonly bosTokenId?: number;
  /** `eos_token_id` as a list (HF allows one id or several). */
  readonly eosTokenIds: readonly number[];
  /** `kvfold.tokenizer`: `bytes` for byte-level checkpoints, else `huggingface` (tokenizer.json). */
  readonly tokenizer: TokenizerKind;
}

type Json = Record<string, unknown>;

/**
 * Upper bounds of the size fields of a model config.json, checked before anything is allocated. Each is
 * far above every published Llama, Mistral or Qwen2 checkpoint (Llama 3.1 405B: 126 layers, 128 heads,
 * hidden 16384, intermediate 53248, vocab 128256), and low enough that the tensor list a config implies
 * stays small.
 */
export const MODEL_LIMITS = {
  /** `num_hidden_layers`. */
  num_hidden_layers: 1024,
  /** `num_attention_heads` and `num_key_value_heads`. */
  num_attention_heads: 1024,
  /** `hidden_size`. */
  hidden_size: 65536,
  /** `intermediate_size`. */
  intermediate_size: 262144,
  /** `vocab_size`. */
  vocab_size: 4194304,
  /** `head_dim`. */
  head_dim: 4096,
  /** `max_position_embeddings` and `sliding_window`. */
  max_position_embeddings: 16777216,
  /** Token ids (`bos_token_id`, `eos_token_id`). */
  token_id: 4194304,
} as const;

/**
 * Parse and validate an HF `config.json` of a Llama, Mistral or Qwen2 model.
 * @param json the parsed document.
 * @param source where it came from, used in error messages.
 * @throws ConfigError listing every invalid or missing field by its JSON path and the allowed values.
 */
export function parseModelConfig(json: unknown, source = 'config.json'): LlamaConfig {
  const issues: ConfigIssue[] = [];
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ConfigError([{ path: '', rule: 'type', message: 'must be a JSON object', allowed: 'object' }], source);
  }
  const c = json as Json;
  const bad = (key: string, rule: string, message: string, allowed?: unknown): undefined => {
    issues.push({ path: `/${key}`, rule, message, ...(allowed === undefined ? {} : { allowed }) });
    return undefined;
  };
  const int = (key: string, opts: { required?: boolean; min?: number; max: number; fallback?: number }): number | undefined => {
    const v = c[key];
    if (v === undefined || v === null) {
      if (opts.required) return bad(key, 'required', 'is required');
      return opts.fallback;
    }
    const min = opts.min ?? 1;
    if (typeof v !== 'number' || !Number.isInteger(v)) return bad(key, 'type', `must be an integer, got ${JSON.stringify(v)}`, 'integer');
    if (v < min) return bad(key, 'minimum', `must be >= ${min}, got ${v}`, { minimum: min });
    if (v > opts.max) return bad(key, 'maximum', `must be <= ${opts.max}, got ${v} (kvfold's bound, checked before anything is allocated)`, { maximum: opts.max });
    return v;
  };
  const positive = (key: string, fallback: number): number => {
    const v = c[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      bad(key, 'exclusiveMinimum', `must be a finite number > 0, got ${JSON.stringify(v)}`, { exclusiveMinimum: 0 });
      return fallback;
    }
    return v;
  };

  const modelTypeRaw = c.model_type;
  let modelType: ModelType = 'llama';
  if (typeof modelTypeRaw !== 'string' || !(MODEL_TYPES as readonly string[]).includes(modelTypeRaw)) {
    bad('model_type', 'enum', `must be one of ${MODEL_TYPES.map((m) => JSON.stringify(m)).join(', ')}, got ${JSON.stringify(modelTypeRaw)}`, MODEL_TYPES);
  } else {
    modelType = modelTypeRaw as ModelType;
  }

  const L = MODEL_LIMITS;
  const vocabSize = int('vocab_size', { required: true, max: L.vocab_size });
  const hiddenSize = int('hidden_size', { required: true, max: L.hidden_size });
  const intermediateSize = int('intermediate_size', { required: true, max: L.intermediate_size });
  const layers = int('num_hidden_layers', { required: true, max: L.num_hidden_layers });
  const heads = int('num_attention_heads', { required: true, max: L.num_attention_heads });
  const kvHeads = int('num_key_value_heads', { fallback: heads, max: L.num_attention_heads });
  let headDim = int('head_dim', { max: L.head_dim });
  if (headDim === undefined && c.head_dim == null && hiddenSize !== undefined && heads !== undefined) {
    if (hiddenSize % heads !== 0) {
      bad('head_dim', 'required', `is required because hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${heads}`);
    } else {
      headDim = hiddenSize / heads;
    }
  }
  if (headDim !== undefined && headDim % 2 !== 0) bad('head_dim', 'multipleOf', `must be even for rotary embeddings, got ${headDim}`, { multipleOf: 2 });
  if (heads !== undefined && kvHeads !== undefined && heads % kvHeads !== 0) {
    bad('num_key_value_heads', 'multipleOf', `must divide num_attention_heads (${heads}), got ${kvHeads}`, { divides: heads });
  }
  const ropeTheta = positive('rope_theta', 10000);
  const rmsNormEps = positive('rms_norm_eps', 1e-6);
  const maxPositionEmbeddings = int('max_position_embeddings', { fallback: 2048, max: L.max_position_embeddings }) ?? 2048;

  const tieRaw = c.tie_word_embeddings;
  let tieWordEmbeddings = false;
  if (tieRaw !== undefined && tieRaw !== null) {
    if (typeof tieRaw !== 'boolean') bad('tie_word_embeddings', 'type', `must be a boolean, got ${JSON.stringify(tieRaw)}`, 'boolean');
    else tieWordEmbeddings = tieRaw;
  }

  const act = c.hidden_act ?? 'silu';
  if (act !== 'silu' && act !== 'swish') bad('hidden_act', 'enum', `must be "silu" (SwiGLU), got ${JSON.stringify(act)}`, ['silu', 'swish']);

  const ab = c.attention_bias;
  if (ab !== undefined && ab !== null && typeof ab !== 'boolean') bad('attention_bias', 'type', `must be a boolean, got ${JSON.stringify(ab)}`, 'boolean');
  const attentionBias = modelType === 'qwen2' || ab === true;

  let slidingWindow: number | undefined;
  if (modelType === 'mistral') {
    slidingWindow = int('sliding_window', { max: L.max_position_embeddings });
  } else if (modelType === 'qwen2' && c.use_sliding_window === true) {
    bad('use_sliding_window', 'const', 'qwen2 sliding-window attention is not supported; set it to false', [false]);
  }

  const ropeScaling = parseRopeScaling(c.rope_scaling, bad);

  const bosTokenId = int('bos_token_id', { min: 0, max: L.token_id });
  const eosRaw = c.eos_token_id;
  let eosTokenIds: number[] = [];
  if (eosRaw !== undefined && eosRaw !== null) {
    const list = Array.isArray(eosRaw) ? eosRaw : [eosRaw];
    if (list.length > 1024 || !list.every((v) => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= L.token_id)) {
      bad('eos_token_id', 'type', `must be an integer in [0, ${L.token_id}] or a list of at most 1024 of them, got ${JSON.stringify(eosRaw).slice(0, 200)}`, 'integer | integer[]');
    } else {
      eosTokenIds = list as number[];
    }
  }

  let tokenizer: TokenizerKind = 'huggingface';
  const ext = c.kvfold;
  if (ext !== undefined && ext !== null) {
    if (typeof ext !== 'object' || Array.isArray(ext)) {
      bad('kvfold', 'type', 'must be an object', 'object');
    } else {
      const t = (ext as Json).tokenizer;
      if (t !== undefined) {
        if (t !== 'bytes' && t !== 'huggingface') bad('kvfold/tokenizer', 'enum', `must be "bytes" or "huggingface", got ${JSON.stringify(t)}`, ['bytes', 'huggingface']);
        else tokenizer = t;
      }
    }
  }

  if (issues.length > 0) throw new ConfigError(issues, source);
  return {
    modelType,
    vocabSize: vocabSize!,
    hiddenSize: hiddenSize!,
    intermediateSize: intermediateSize!,
    layers: layers!,
    heads: heads!,
    kvHeads: kvHeads!,
    headDim: headDim!,
    ropeTheta,
    ...(ropeScaling ? { ropeScaling } : {}),
    rmsNormEps,
    tieWordEmbeddings,
    maxPositionEmbeddings,
    attentionBias,
    ...(slidingWindow !== undefined ? { slidingWindow } : {}),
    ...(bosTokenId !== undefined ? { bosTokenId } : {}),
    eosTokenIds,
    tokenizer,
  };
}

function parseRopeScaling(raw: unknown, bad: (key: string, rule: string, message: string, allowed?: unknown) => undefined): RopeScaling | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'object' || Array.isArray(raw)) return bad('rope_scaling', 'type', 'must be an object or null', 'object | null');
  const r = raw as Json;
  const type = r.rope_type ?? r.type;
  if (type === 'default') return undefined;
  const num = (key: string, fallback?: number): number => {
    const v = r[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      bad(`rope_scaling/${key}`, 'exclusiveMinimum', `must be a finite number > 0, got ${JSON.stringify(v)}`, { exclusiveMinimum: 0 });
      return 1;
    }
    return v;
  };
  if (type === 'linear') return { type: 'linear', factor: num('factor') };
  if (type === 'llama3') {
    return {
      type: 'llama3',
      factor: num('factor'),
      lowFreqFactor: num('low_freq_factor', 1),
      highFreqFactor: num('high_freq_factor', 4),
      originalMaxPositionEmbeddings: num('original_max_position_embeddings', 8192),
    };
  }
  return bad('rope_scaling/rope_type', 'enum', `must be "default", "linear" or "llama3", got ${JSON.stringify(type)}`, ['default', 'linear', 'llama3']);
}

/**
 * RoPE inverse frequencies `1 / theta^(2i/d)` for `i < d/2`, with the config's scaling applied.
 * Computed in float64 so the tfjs decoder and the reference forward share the exact same angles.
 */
export function ropeInverseFrequencies(config: Pick<LlamaConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float64Array {
  const half = config.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(config.ropeTheta, (2 * i) / config.headDim);
  const s = config.ropeScaling;
  if (s?.type === 'linear') {
    for (let i = 0; i < half; i++) inv[i] = inv[i]! / s.factor;
  } else if (s?.type === 'llama3') {
    // Meta's Llama 3.1 rule: long wavelengths are slowed by `factor`, short ones kept, a smooth blend between.
    const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const f = inv[i]!;
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < highWavelen) continue;
      if (wavelen > lowWavelen) {
        inv[i] = f / s.factor;
      } else {
        const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        inv[i] = (1 - smooth) * (f / s.factor) + smooth * f;
      }
    }
  }
  return inv;
}

/**
 * Cosine and sine tables `[n, headDim]` for the given positions in HF's layout (`emb = cat(freqs, freqs)`),
 * which pairs dimension `i` with `i + d/2` (`rotate_half`).
 */
export function ropeTables(config: Pick<LlamaConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>, positions: ArrayLike<number>): {
  /** Cosines, `[n, headDim]` row-major. */
  cos: Float32Array;
  /** Sines, `[n, headDim]` row-major. */
  sin: Float32Array;
} {
  const d = config.headDim;
  const half = d / 2;
  const inv = ropeInverseFrequencies(config);
  const n = positions.length;
  const cos = new Float32Array(n * d);
  const sin = new Float32Array(n * d);
  for (let t = 0; t < n; t++) {
    const p = positions[t]!;
    for (let i = 0; i < half; i++) {
      // HF computes the angle in float32 (pos * inv_freq); float64 here differs by < 1 ulp of the angle.
      const a = p * inv[i]!;
      const c = Math.cos(a);
      const s = Math.sin(a);
      cos[t * d + i] = c;
      cos[t * d + i + half] = c;
      sin[t * d + i] = s;
      sin[t * d + i + half] = s;
    }
  }
  return { cos, sin };
}
