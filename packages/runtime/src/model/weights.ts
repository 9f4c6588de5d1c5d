import { ModelError } from '@kvfold/core';
import type { LlamaConfig } from './config.js';
import type { Checkpoint, LoadedTensor } from './safetensors.js';

/** A float32 matrix or vector in host memory. */
export interface HostWeight {
  /** Dimensions: `[out, in]` for projections (HF `nn.Linear` layout), `[n]` for norms and biases. */
  readonly shape: readonly number[];
  /** Elements, row-major. */
  readonly data: Float32Array;
}

/** A linear projection `y = x W^T + b`. */
export interface Linear {
  /** `[out, in]`. */
  readonly weight: HostWeight;
  /** `[out]`, when the checkpoint has one. */
  readonly bias?: HostWeight;
}

/** The weights of one decoder layer. */
export interface LayerWeights {
  /** RMSNorm before attention, `[hidden]`. */
  readonly inputNorm: HostWeight;
  /** Query projection `[heads * headDim, hidden]`. */
  readonly q: Linear;
  /** Key projection `[kvHeads * headDim, hidden]`. */
  readonly k: Linear;
  /** Value projection `[kvHeads * headDim, hidden]`. */
  readonly v: Linear;
  /** Output projection `[hidden, heads * headDim]`. */
  readonly o: Linear;
  /** RMSNorm before the MLP, `[hidden]`. */
  readonly postNorm: HostWeight;
  /** SwiGLU gate `[intermediate, hidden]`. */
  readonly gate: Linear;
  /** SwiGLU up `[intermediate, hidden]`. */
  readonly up: Linear;
  /** SwiGLU down `[hidden, intermediate]`. */
  readonly down: Linear;
}

/** Every weight of a Llama-family decoder, float32 in host memory. */
export interface LlamaWeights {
  /** Token embeddings `[vocab, hidden]`. */
  readonly embed: HostWeight;
  /** Decoder layers. */
  readonly layers: readonly LayerWeights[];
  /** Final RMSNorm `[hidden]`. */
  readonly norm: HostWeight;
  /** Output projection `[vocab, hidden]`; the same object as `embed` when embeddings are tied. */
  readonly lmHead: HostWeight;
}

/** HF tensor names of the Llama / Mistral / Qwen2 layout. */
export const tensorNames = {
  /** Token embedding matrix. */
  embed: 'model.embed_tokens.weight',
  /** Final RMSNorm weight. */
  norm: 'model.norm.weight',
  /** Output projection (absent when embeddings are tied). */
  lmHead: 'lm_head.weight',
  /** Prefix of layer `i`'s tensors. */
  layer: (i: number): string => `model.layers.${i}`,
  /** Sub-module path of each projection inside a layer. */
  linear: {
    /** Query projection. */
    q: 'self_attn.q_proj',
    /** Key projection. */
    k: 'self_attn.k_proj',
    /** Value projection. */
    v: 'self_attn.v_proj',
    /** Attention output projection. */
    o: 'self_attn.o_proj',
    /** SwiGLU gate projection. */
    gate: 'mlp.gate_proj',
    /** SwiGLU up projection. */
    up: 'mlp.up_proj',
    /** SwiGLU down projection. */
    down: 'mlp.down_proj',
  },
  /** RMSNorm before attention, inside a layer. */
  inputNorm: 'input_layernorm.weight',
  /** RMSNorm before the MLP, inside a layer. */
  postNorm: 'post_attention_layernorm.weight',
} as const;

/** Name of a projection inside a layer. */
export type LinearName = keyof typeof tensorNames.linear;

/** Expected `[out, in]` shape of each projection for a config. */
export function linearShapes(config: LlamaConfig): Record<LinearName, [number, number]> {
  const { hiddenSize: h, heads, kvHeads, headDim: d, intermediateSize: m } = config;
  return {
    q: [heads * d, h],
    k: [kvHeads * d, h],
    v: [kvHeads * d, h],
    o: [h, heads * d],
    gate: [m, h],
    up: [m, h],
    down: [h, m],
  };
}

/**
 * Every tensor the decoder requires, with its expected shape. Biases are required only where the
 * config says the architecture has them (q/k/v for qwen2 or `attention_bias`).
 */
export function expectedTensors(config: LlamaConfig): Map<string, readonly number[]> {
  const out = new Map<string, readonly number[]>();
  out.set(tensorNames.embed, [config.vocabSize, config.hiddenSize]);
  const shapes = linearShapes(config);
  for (let i = 0; i < config.layers; i++) {
    const p = tensorNames.layer(i);
    out.set(`${p}.${tensorNames.inputNorm}`, [config.hiddenSize]);
    out.set(`${p}.${tensorNames.postNorm}`, [config.hiddenSize]);
    for (const [key, path] of Object.entries(tensorNames.linear) as [LinearName, string][]) {
      out.set(`${p}.${path}.weight`, shapes[key]);
      if (config.attentionBias && (key === 'q' || key === 'k' || key === 'v')) out.set(`${p}.${path}.bias`, [shapes[key][0]]);
    }
  }
  out.set(tensorNames.norm, [config.hiddenSize]);
  if (!config.tieWordEmbeddings) out.set(tensorNames.lmHead, [config.vocabSize, config.hiddenSize]);
  return out;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Read and check every weight of a checkpoint against the config.
 * @throws ModelError naming the tensor when one is missing, has another shape than the config implies,
 *   or holds NaN/Inf; and naming the file when a shard is unreadable.
 */
export async function loadWeights(checkpoint: Checkpoint, config: LlamaConfig): Promise<LlamaWeights> {
  // What the checkpoint holds bounds what the config may claim, before the tensor list is even built.
  let held = 0;
  for (const name of checkpoint.names()) {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (m) held = Math.max(held, Number(m[1]) + 1);
  }
  if (config.layers > held) {
    throw new ModelError(`${checkpoint.folder}: config.json says num_hidden_layers = ${config.layers}, but the checkpoint holds ${held} layer${held === 1 ? '' : 's'}`, {
      field: 'num_hidden_layers',
      value: config.layers,
      held,
      reason: 'shape',
    });
  }
  const embed0 = checkpoint.entry(tensorNames.embed);
  if (embed0 && !sameShape(embed0.shape, [config.vocabSize, config.hiddenSize])) {
    throw new ModelError(
      `${checkpoint.folder}: tensor "${tensorNames.embed}" has shape [${embed0.shape.join(', ')}] but config.json says vocab_size ${config.vocabSize} x hidden_size ${config.hiddenSize}`,
      { tensor: tensorNames.embed, shape: embed0.shape, expected: [config.vocabSize, config.hiddenSize], reason: 'shape' },
    );
  }
  const expected = expectedTensors(config);
  const missing = [...expected.keys()].filter((n) => !checkpoint.entry(n));
  if (missing.length > 0) {
    const shown = missing.slice(0, 5).map((n) => `"${n}"`).join(', ');
    throw new ModelError(`${checkpoint.folder}: checkpoint lacks tensor ${shown}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`, { tensor: missing[0], missing, reason: 'missing' });
  }
  for (const [name, shape] of expected) {
    const got = checkpoint.entry(name)!.shape;
    if (!sameShape(got, shape)) {
      throw new ModelError(`${checkpoint.folder}: tensor "${name}" has shape [${got.join(', ')}] but the config implies [${shape.join(', ')}]`, { tensor: name, shape: got, expected: shape, reason: 'shape' });
    }
  }
  const read = async (name: string): Promise<HostWeight> => {
    const t: LoadedTensor = await checkpoint.read(name);
    for (let i = 0; i < t.data.length; i++) {
      if (!Number.isFinite(t.data[i])) throw new ModelError(`${checkpoint.folder}: tensor "${name}" holds NaN or Infinity at element ${i}`, { tensor: name, reason: 'non-finite' });
    }
    return { shape: t.shape, data: t.data };
  };
  const shapes = linearShapes(config);
  const linear = async (prefix: string, key: LinearName): Promise<Linear> => {
    const base = `${prefix}.${tensorNames.linear[key]}`;
    const weight = await read(`${base}.weight`);
    const biasEntry = checkpoint.entry(`${base}.bias`);
    if (!biasEntry) return { weight };
    if (!sameShape(biasEntry.shape, [shapes[key][0]])) {
      throw new ModelError(`${checkpoint.folder}: tensor "${base}.bias" has shape [${biasEntry.shape.join(', ')}] but the config implies [${shapes[key][0]}]`, { tensor: `${base}.bias`, reason: 'shape' });
    }
    return { weight, bias: await read(`${base}.bias`) };
  };
  const embed = await read(tensorNames.embed);
  const layers: LayerWeights[] = [];
  for (let i = 0; i < config.layers; i++) {
    const p = tensorNames.layer(i);
    layers.push({
      inputNorm: await read(`${p}.${tensorNames.inputNorm}`),
      q: await linear(p, 'q'),
      k: await linear(p, 'k'),
      v: await linear(p, 'v'),
      o: await linear(p, 'o'),
      postNorm: await read(`${p}.${tensorNames.postNorm}`),
      gate: await linear(p, 'gate'),
      up: await linear(p, 'up'),
      down: await linear(p, 'down'),
    });
  }
  const norm = await read(tensorNames.norm);
  const lmHead = config.tieWordEmbeddings ? embed : await read(tensorNames.lmHead);
  return { embed, layers, norm, lmHead };
}

/**
 * Flatten weights back to HF tensor names (for writing a checkpoint). Tied embeddings are written
 * once, under the embedding's name, as HF does.
 */
export function weightsToTensors(weights: LlamaWeights, config: Pick<LlamaConfig, 'tieWordEmbeddings'>): Map<string, HostWeight> {
  const out = new Map<string, HostWeight>();
  out.set(tensorNames.embed, weights.embed);
  weights.layers.forEach((l, i) => {
    const p = tensorNames.layer(i);
    out.set(`${p}.${tensorNames.inputNorm}`, l.inputNorm);
    for (const key of Object.keys(tensorNames.linear) as LinearName[]) {
      const lin = l[key];
      out.set(`${p}.${tensorNames.linear[key]}.weight`, lin.weight);
      if (lin.bias) out.set(`${p}.${tensorNames.linear[key]}.bias`, lin.bias);
    }
    out.set(`${p}.${tensorNames.postNorm}`, l.postNorm);
  });
  out.set(tensorNames.norm, weights.norm);
  if (!config.tieWordEmbeddings) out.set(tensorNames.lmHead, weights.lmHead);
  return out;
}

/**
 * Random weights for a config (seeded, normal-ish with std `scale`), for tests and demos. Norm weights
 * are drawn around 1 so RMSNorm is exercised without being the identity.
 */
export function randomWeights(config: LlamaConfig, seed = 0, scale = 0.2): LlamaWeights {
  let s = seed >>> 0 || 0x9e3779b9;
  const uniform = () => {
    // xorshift32: deterministic and dependency-free; quality is irrelevant for test weights.
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(uniform() + 1e-12)) * Math.cos(2 * Math.PI * uniform());
  const mat = (shape: readonly number[], std = scale, mean = 0): HostWeight => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = mean + std * normal();
    return { shape: [...shape], data };
  };
  const shapes = linearShapes(config);
  const lin = (key: LinearName, bias: boolean): Linear => {
    const weight = mat(shapes[key]);
    return bias ? { weight, bias: mat([shapes[key][0]]) } : { weight };
  };
  const h = config.hiddenSize;
  const embed = mat([config.vocabSize, h], 1);
  const layers: LayerWeights[] = [];
  for (let i = 0; i < config.layers; i++) {
    const b = config.attentionBias;
    layers.push({
      inputNorm: mat([h], 0.1, 1),
      q: lin('q', b),
      k: lin('k', b),
      v: lin('v', b),
      o: lin('o', false),
      postNorm: mat([h], 0.1, 1),
      gate: lin('gate', false),
      up: lin('up', false),
      down: lin('down', false),
    });
  }
  return { embed, layers, norm: mat([h], 0.1, 1), lmHead: config.tieWordEmbeddings ? embed : mat([config.vocabSize, h]) };
}
