import type { GroupReduction } from '@kvfold/core';
import { attr, GraphBuilder, type NodeList } from '@kvfold/onnx-graph';
import { ropeInverseFrequencies, type HostWeight, type Linear, type LlamaConfig, type LlamaWeights } from '@kvfold/runtime';

/**
 * How attention is written in the exported graph.
 * - `kvfold`: grouped-query attention without repeating K/V (queries reshaped to
 *   `[batch, kvHeads, group, n, headDim]`), with the `attention_sums.{i}` outputs and, optionally, the
 *   `past_log_counts.{i}` inputs. What `kvfold export-onnx` writes.
 * - `plain`: the layout Hugging Face Optimum exports Llama-family decoders in — K/V repeated per query
 *   head with Unsqueeze/Expand/Reshape, `MatMul` → scale → additive 4-D mask → `Softmax` → `MatMul` — and
 *   no extra outputs. Used as the third-party-style fixture `expose-attention` is tested on.
 */
export type AttentionLayout = 'kvfold' | 'plain';

/** Options of {@link buildDecoderGraph}. */
export interface DecoderGraphOptions {
  /** Attention layout. Default `kvfold`. */
  readonly layout?: AttentionLayout;
  /** Add the `attention_sums.{i}` and `attention_last.{i}` outputs (`kvfold` layout only). Default true. */
  readonly attentionSums?: boolean;
  /** Reduction of a GQA group's query heads in `attention_sums`. Default `mean`. */
  readonly groupReduction?: GroupReduction;
  /** Add the `past_log_counts.{i}` inputs for proportional attention (`kvfold` layout only). Default false. */
  readonly logCounts?: boolean;
  /** Graph name. Default `kvfold_decoder`. */
  readonly name?: string;
}

/** Symbolic dimension names of the exported graph (the ones Optimum and transformers.js use). */
export const DIMS = {
  /** Batch size. */
  batch: 'batch_size',
  /** Tokens of this call. */
  sequence: 'sequence_length',
  /** Tokens (slots) already cached. */
  past: 'past_sequence_length',
  /** `past + sequence`. */
  total: 'total_sequence_length',
} as const;

/** Input and output names of the exported decoder, per layer where they carry an index. */
export const IO = {
  /** `int64 [batch, sequence]`. */
  inputIds: 'input_ids',
  /** `int64 [batch, total]`: 1 for slots attended to. */
  attentionMask: 'attention_mask',
  /** `int64 [batch, sequence]`: true token positions (RoPE). */
  positionIds: 'position_ids',
  /** `int64` scalar: compute logits of the last k tokens only (0 = all); transformers.js sets it. */
  numLogitsToKeep: 'num_logits_to_keep',
  /** `float32 [batch, kvHeads, past, headDim]`. */
  pastKey: (i: number): string => `past_key_values.${i}.key`,
  /** `float32 [batch, kvHeads, past, headDim]`. */
  pastValue: (i: number): string => `past_key_values.${i}.value`,
  /** `float32 [batch, kvHeads, past]`: log(count) added to each cached slot's attention logit. */
  pastLogCounts: (i: number): string => `past_log_counts.${i}`,
  /** `float32 [batch, sequence, vocab]` (or the last `num_logits_to_keep` tokens). */
  logits: 'logits',
  /** `float32 [batch, kvHeads, total, headDim]`: past keys followed by this call's (post-RoPE). */
  presentKey: (i: number): string => `present.${i}.key`,
  /** `float32 [batch, kvHeads, total, headDim]`. */
  presentValue: (i: number): string => `present.${i}.value`,
  /** `float32 [batch, kvHeads, total]`: attention each slot received, summed over this call's queries, reduced over each GQA group. */
  attentionSums: (i: number): string => `attention_sums.${i}`,
  /** `float32 [batch, kvHeads, total]`: attention from this call's last query alone, reduced over each GQA group. */
  attentionLast: (i: number): string => `attention_last.${i}`,
} as const;

/** The most negative float32: what masked logits get (softmax gives them exactly 0, and never NaN). */
const LOWEST = -3.4028234663852886e38;
/** A Slice end meaning "to the end". */
const END = 2 ** 62;

/** `[out, in]` row-major to `[in, out]` (MatMul's right operand), one output row per input column. */
function transposed(w: HostWeight): Float32Array {
  const [rows, cols] = w.shape as [number, number];
  const out = new Float32Array(rows * cols);
  const src = w.data;
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = src[base + c]!;
  }
  return out;
}

/**
 * Build the ONNX graph of a Llama / Mistral / Qwen2 decoder with Hugging Face's cache interface:
 * inputs `input_ids`, `attention_mask`, `position_ids`, `num_logits_to_keep`, `past_key_values.{i}.key|value`
 * (`[batch, kvHeads, past, headDim]`), outputs `logits` and `present.{i}.key|value`, weights as float32
 * initializers. Semantics equal `@kvfold/runtime`'s decoder: HF `rotate_half` RoPE at `position_ids`
 * (angles in float64, as the runtime computes them), RMSNorm, SwiGLU, and a query at slot `past + t`
 * attending to every slot at or before it whose `attention_mask` is 1 (and inside the sliding window, by
 * slot, for Mistral).
 */
export function buildDecoderGraph(config: LlamaConfig, weights: LlamaWeights, options: DecoderGraphOptions = {}): GraphBuilder {
  const layout = options.layout ?? 'kvfold';
  const sums = layout === 'kvfold' && (options.attentionSums ?? true);
  const logCounts = layout === 'kvfold' && (options.logCounts ?? false);
  const reduction = options.groupReduction ?? 'mean';
  const { heads: QH, kvHeads: KH, headDim: D, hiddenSize: H, vocabSize: V } = config;
  const G = QH / KH;
  const g = new GraphBuilder(options.name ?? 'kvfold_decoder', { producer: '@kvfold/onnx-export' });
  const { batch, sequence, past, total } = DIMS;

  g.input(IO.inputIds, 'int64', [batch, sequence]);
  g.input(IO.attentionMask, 'int64', [batch, total]);
  g.input(IO.positionIds, 'int64', [batch, sequence]);
  g.input(IO.numLogitsToKeep, 'int64', []);
  for (let i = 0; i < config.layers; i++) {
    // kvHeads and headDim are numbers, not names: transformers.js sizes the empty first-call cache from them.
    g.input(IO.pastKey(i), 'float32', [batch, KH, past, D]);
    g.input(IO.pastValue(i), 'float32', [batch, KH, past, D]);
    if (logCounts) g.input(IO.pastLogCounts(i), 'float32', [batch, KH, past]);
  }

  const weight = (name: string, w: HostWeight): string => g.initializer(name, w.shape, w.data);
  const linear = (x: string, name: string, lin: Linear): string => {
    const [out, inp] = lin.weight.shape as [number, number];
    const y = g.op('MatMul', [x, g.initializer(`${name}.weight_t`, [inp, out], transposed(lin.weight))]);
    return lin.bias ? g.op('Add', [y, weight(`${name}.bias`, lin.bias)]) : y;
  };
  const eps = g.f32(config.rmsNormEps, true);
  const rmsNorm = (x: string, name: string, w: HostWeight): string => {
    const ms = g.reduce('ReduceMean', g.op('Mul', [x, x]), [-1], true);
    const r = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [ms, eps])])]);
    return g.op('Mul', [g.op('Mul', [x, r]), weight(name, w)]);
  };

  // Sequence bookkeeping: S new tokens, T = past + S slots; a query t sits at slot past + t.
  const S = g.shape(IO.inputIds, 1, 2);
  const T = g.op('Add', [g.shape(IO.pastKey(0), 2, 3), S]);
  const P = g.shape(IO.pastKey(0), 2, 3);
  const one = g.i64(1, true);
  const slots = g.op('Range', [g.i64(0, true), g.squeeze(T, [0]), one]); // [T]
  const querySlots = g.op('Range', [g.squeeze(P, [0]), g.squeeze(T, [0]), one]); // [S]
  let visible = g.op('LessOrEqual', [g.unsqueeze(slots, [0]), g.unsqueeze(querySlots, [1])]); // [S, T]
  if (config.slidingWindow !== undefined) {
    const lo = g.op('Sub', [g.unsqueeze(querySlots, [1]), g.i64(config.slidingWindow, true)]);
    visible = g.op('And', [visible, g.op('Greater', [g.unsqueeze(slots, [0]), lo])]);
  }
  const padMask = g.cast(IO.attentionMask, 'bool'); // [B, T]

  // RoPE tables at position_ids: angles in float64 like the runtime's ropeTables, then float32.
  const inv = ropeInverseFrequencies(config);
  const invName = g.initializer('rope.inv_freq', [inv.length], Float64Array.from(inv));
  const freqs = g.op('Mul', [g.unsqueeze(g.cast(IO.positionIds, 'float64'), [2]), invName]); // [B, S, D/2]
  const angles = g.concat([freqs, freqs], 2);
  const cos = g.unsqueeze(g.cast(g.op('Cos', [angles]), 'float32'), [1]); // [B, 1, S, D]
  const sin = g.unsqueeze(g.cast(g.op('Sin', [angles]), 'float32'), [1]);
  const half = D / 2;
  const rope = (x: string): string => {
    const x1 = g.slice(x, [0], [half], [3]);
    const x2 = g.slice(x, [half], [END], [3]);
    const rotated = g.concat([g.op('Neg', [x2]), x1], 3);
    return g.op('Add', [g.op('Mul', [x, cos]), g.op('Mul', [rotated, sin])]);
  };
  const toHeads = (x: string, hs: number): string => g.op('Transpose', [g.op('Reshape', [x, g.i64([0, 0, hs, D])])], { perm: attr.ints([0, 2, 1, 3]) });
  const scale = g.f32(1 / Math.sqrt(D), true);

  let x = g.op('Gather', [weight('model.embed_tokens.weight', weights.embed), IO.inputIds]);
  for (let i = 0; i < config.layers; i++) {
    const w = weights.layers[i]!;
    const p = `model.layers.${i}`;
    const h = rmsNorm(x, `${p}.input_layernorm.weight`, w.inputNorm);
    const q = rope(toHeads(linear(h, `${p}.self_attn.q_proj`, w.q), QH)); // [B, QH, S, D]
    const k = rope(toHeads(linear(h, `${p}.self_attn.k_proj`, w.k), KH));
    const v = toHeads(linear(h, `${p}.self_attn.v_proj`, w.v), KH);
    const keys = g.opN('Concat', [IO.pastKey(i), k], { axis: attr.int(2) }, { names: [IO.presentKey(i)] })[0]!;
    const values = g.opN('Concat', [IO.pastValue(i), v], { axis: attr.int(2) }, { names: [IO.presentValue(i)] })[0]!;
    const attended =
      layout === 'kvfold'
        ? groupedAttention(g, { q, keys, values, visible, padMask, scale, KH, G, QH, D, i, sums, reduction, logCounts })
        : plainAttention(g, { q, keys, values, visible, padMask, scale, KH, G, QH, D });
    const out = g.op('Reshape', [g.op('Transpose', [attended], { perm: attr.ints([0, 2, 1, 3]) }), g.i64([0, 0, QH * D])]);
    const x1 = g.op('Add', [x, linear(out, `${p}.self_attn.o_proj`, w.o)]);
    const h2 = rmsNorm(x1, `${p}.post_attention_layernorm.weight`, w.postNorm);
    const gate = linear(h2, `${p}.mlp.gate_proj`, w.gate);
    const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), linear(h2, `${p}.mlp.up_proj`, w.up)]);
    x = g.op('Add', [x1, linear(act, `${p}.mlp.down_proj`, w.down)]);
  }

  // num_logits_to_keep = k > 0 keeps the last k tokens (generation asks for 1); 0 keeps all.
  const keep = g.unsqueeze(IO.numLogitsToKeep, [0]);
  const start = g.op('Where', [g.op('Greater', [keep, g.i64([0])]), g.op('Max', [g.op('Sub', [S, keep]), g.i64([0])]), g.i64([0])]);
  const last = g.op('Slice', [x, start, g.i64([END]), g.i64([1])]);
  const xn = rmsNorm(last, 'model.norm.weight', weights.norm);
  const head =
    weights.lmHead === weights.embed
      ? g.op('Transpose', ['model.embed_tokens.weight'], { perm: attr.ints([1, 0]) })
      : g.initializer('lm_head.weight_t', [H, V], transposed(weights.lmHead));
  g.opN('MatMul', [xn, head], {}, { names: [IO.logits] });

  g.output(IO.logits, 'float32', [batch, sequence, V]);
  for (let i = 0; i < config.layers; i++) {
    g.output(IO.presentKey(i), 'float32', [batch, KH, total, D]);
    g.output(IO.presentValue(i), 'float32', [batch, KH, total, D]);
  }
  if (sums) for (let i = 0; i < config.layers; i++) g.output(IO.attentionSums(i), 'float32', [batch, KH, total]);
  if (sums) for (let i = 0; i < config.layers; i++) g.output(IO.attentionLast(i), 'float32', [batch, KH, total]);
  g.meta('kvfold.layout', layout);
  if (sums) g.meta('kvfold.attention_sums.group_reduction', reduction);
  if (logCounts) g.meta('kvfold.past_log_counts', 'true');
  return g;
}

interface AttentionArgs {
  readonly q: string;
  readonly keys: string;
  readonly values: string;
  /** bool `[S, T]`: causal (and window) visibility by slot. */
  readonly visible: string;
  /** bool `[B, T]`: attention_mask. */
  readonly padMask: string;
  readonly scale: string;
  readonly KH: number;
  readonly G: number;
  readonly QH: number;
  readonly D: number;
}

/**
 * Queries grouped per kv head (`[B, KH, G, S, D]`) against keys `[B, KH, 1, D, T]`: one batched MatMul,
 * K/V never repeated. Returns `[B, QH, S, D]`; writes `attention_sums.{i}` when asked.
 */
function groupedAttention(
  g: NodeList,
  a: AttentionArgs & { readonly i: number; readonly sums: boolean; readonly reduction: GroupReduction; readonly logCounts: boolean },
): string {
  const q5 = g.op('Reshape', [a.q, g.i64([0, a.KH, a.G, -1, a.D])]);
  const kt = g.unsqueeze(g.op('Transpose', [a.keys], { perm: attr.ints([0, 1, 3, 2]) }), [2]); // [B, KH, 1, D, T]
  let logits = g.op('Mul', [g.op('MatMul', [q5, kt]), a.scale]); // [B, KH, G, S, T]
  if (a.logCounts) {
    // Cached slots get log(count); this call's new slots (count 1) get 0.
    const S = g.op('Sub', [g.shape(a.keys, 2, 3), g.shape(IO.pastLogCounts(a.i), 2, 3)]);
    const pads = g.concat([g.i64([0, 0, 0, 0, 0]), S], 0);
    const lc = g.op('Pad', [IO.pastLogCounts(a.i), pads]); // [B, KH, T]
    logits = g.op('Add', [logits, g.unsqueeze(lc, [2, 3])]);
  }
  const visible = g.op('And', [g.unsqueeze(a.visible, [0, 1, 2]), g.unsqueeze(a.padMask, [1, 2, 3])]); // [B, 1, 1, S, T]
  const probs = g.op('Softmax', [g.op('Where', [visible, logits, g.f32(LOWEST, true)])], { axis: attr.int(-1) });
  if (a.sums) {
    const op = a.reduction === 'max' ? 'ReduceMax' : a.reduction === 'sum' ? 'ReduceSum' : 'ReduceMean';
    const perHead = g.reduce('ReduceSum', probs, [3], false); // [B, KH, G, T]
    g.opN(op, [perHead, g.i64([2])], { keepdims: attr.int(0) }, { names: [IO.attentionSums(a.i)] });
    const lastRow = g.squeeze(g.slice(probs, [-1], [END], [3]), [3]); // [B, KH, G, T]
    g.opN(op, [lastRow, g.i64([2])], { keepdims: attr.int(0) }, { names: [IO.attentionLast(a.i)] });
  }
  const out = g.op('MatMul', [probs, g.unsqueeze(a.values, [2])]); // [B, KH, G, S, D]
  return g.op('Reshape', [out, g.i64([0, a.QH, -1, a.D])]);
}

/** Optimum's layout: K/V repeated to every query head, an additive float mask, 4-D Softmax. */
function plainAttention(g: NodeList, a: AttentionArgs): string {
  const repeat = (x: string): string => {
    const shape = g.shape(x);
    const expanded = g.op('Expand', [g.unsqueeze(x, [2]), g.concat([g.slice(shape, [0], [2], [0]), g.i64([a.G]), g.slice(shape, [2], [4], [0])], 0)]);
    return g.op('Reshape', [expanded, g.i64([0, a.QH, -1, a.D])]);
  };
  const k = repeat(a.keys);
  const v = repeat(a.values);
  const scores = g.op('Mul', [g.op('MatMul', [a.q, g.op('Transpose', [k], { perm: attr.ints([0, 1, 3, 2]) })]), a.scale]); // [B, QH, S, T]
  const visible = g.op('And', [g.unsqueeze(a.visible, [0, 1]), g.unsqueeze(a.padMask, [1, 2])]); // [B, 1, S, T]
  const mask = g.op('Where', [visible, g.f32(0, true), g.f32(LOWEST, true)]);
  const probs = g.op('Softmax', [g.op('Add', [scores, mask])], { axis: attr.int(-1) });
  return g.op('MatMul', [probs, v]); // [B, QH, S, D]
}
