import * as tf from '@tensorflow/tfjs';
import type { TinyModelConfig } from '../config.js';
import type { NamedTensor } from './tensors.js';
import { createRng } from '@kvfold/core';
import { normal } from '../data/random.js';

// tfjs's cpu engine prints a Node.js banner on its first tensor; its PROD flag only silences tfjs's log
// (as in @kvfold/backend-tfjs; KVFOLD_TFJS_LOGS=1 keeps it).
if (process.env.KVFOLD_TFJS_LOGS !== '1') tf.env().set('PROD', true);

/** Trainable parameters keyed by Hugging Face tensor names. */
export type Params = Map<string, tf.Variable>;

/** HF names and shapes ([out, in] for projections) of every parameter of a tied-embedding Llama. */
export function paramShapes(c: TinyModelConfig): [string, number[]][] {
  const out: [string, number[]][] = [['model.embed_tokens.weight', [c.vocabSize, c.hidden]]];
  for (let i = 0; i < c.layers; i++) {
    const p = `model.layers.${i}.`;
    out.push(
      [`${p}input_layernorm.weight`, [c.hidden]],
      [`${p}self_attn.q_proj.weight`, [c.heads * c.headDim, c.hidden]],
      [`${p}self_attn.k_proj.weight`, [c.kvHeads * c.headDim, c.hidden]],
      [`${p}self_attn.v_proj.weight`, [c.kvHeads * c.headDim, c.hidden]],
      [`${p}self_attn.o_proj.weight`, [c.hidden, c.heads * c.headDim]],
      [`${p}post_attention_layernorm.weight`, [c.hidden]],
      [`${p}mlp.gate_proj.weight`, [c.intermediate, c.hidden]],
      [`${p}mlp.up_proj.weight`, [c.intermediate, c.hidden]],
      [`${p}mlp.down_proj.weight`, [c.hidden, c.intermediate]],
    );
  }
  out.push(['model.norm.weight', [c.hidden]]);
  return out;
}

/** Seeded initialisation: norms at 1, matrices N(0, 0.02), residual outputs scaled by 1/sqrt(2L). */
export function initParams(c: TinyModelConfig, seed: number): Record<string, NamedTensor> {
  const rng = createRng(seed);
  const res: Record<string, NamedTensor> = {};
  for (const [name, shape] of paramShapes(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (name.endsWith('norm.weight')) data.fill(1);
    else {
      const std = /o_proj|down_proj/.test(name) ? 0.02 / Math.sqrt(2 * c.layers) : 0.02;
      for (let i = 0; i < n; i++) data[i] = normal(rng) * std;
    }
    res[name] = { shape, data };
  }
  return res;
}

/** Wrap host tensors as tf variables. */
export function toVariables(tensors: Record<string, NamedTensor>): Params {
  const m: Params = new Map();
  for (const [name, t] of Object.entries(tensors)) m.set(name, tf.variable(tf.tensor(t.data, [...t.shape], 'float32'), true, name));
  return m;
}

/** Copy variables back to host tensors. */
export function fromVariables(params: Params): Record<string, NamedTensor> {
  const out: Record<string, NamedTensor> = {};
  for (const [name, v] of params) out[name] = { shape: v.shape.slice(), data: v.dataSync() as Float32Array };
  return out;
}

const ropeCache = new Map<string, { cos: tf.Tensor2D; sin: tf.Tensor2D }>();

/** HF rotate-half RoPE tables [T, headDim] (frequency i used for dims i and i + headDim/2). */
function ropeTables(T: number, headDim: number, theta: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const key = `${T}:${headDim}:${theta}`;
  let t = ropeCache.get(key);
  if (!t) {
    const half = headDim / 2;
    const cos = new Float32Array(T * headDim);
    const sin = new Float32Array(T * headDim);
    for (let p = 0; p < T; p++) {
      for (let i = 0; i < half; i++) {
        const ang = p / Math.pow(theta, (2 * i) / headDim);
        cos[p * headDim + i] = cos[p * headDim + i + half] = Math.cos(ang);
        sin[p * headDim + i] = sin[p * headDim + i + half] = Math.sin(ang);
      }
    }
    t = { cos: tf.keep(tf.tensor2d(cos, [T, headDim])), sin: tf.keep(tf.tensor2d(sin, [T, headDim])) };
    ropeCache.set(key, t);
  }
  return t;
}

const maskCache = new Map<number, tf.Tensor2D>();

function causalMask(T: number): tf.Tensor2D {
  let m = maskCache.get(T);
  if (!m) {
    const d = new Float32Array(T * T);
    for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) d[i * T + j] = -1e9;
    m = tf.keep(tf.tensor2d(d, [T, T]));
    maskCache.set(T, m);
  }
  return m;
}

function rmsNorm(x: tf.Tensor, w: tf.Tensor, eps: number): tf.Tensor {
  const ms = tf.mean(tf.square(x), -1, true);
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, eps))), w);
}

/** Swap the last two axes. */
function swapLast(t: tf.Tensor): tf.Tensor {
  const r = t.rank;
  const perm = [...Array(r).keys()];
  [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
  return tf.transpose(t, perm);
}

/**
 * Batched matmul whose backward pass transposes explicitly. tfjs-wasm's BatchMatMul is about 10x
 * slower with `transposeA`/`transposeB` set (measured here: 51 ms vs 6 ms for 4096x64 by 64x192),
 * and tfjs's own matMul gradient uses those flags; an explicit transpose is a cheap copy.
 */
export const mm = tf.customGrad(((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [a, b, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
  save([a, b]);
  return {
    value: tf.matMul(a as tf.Tensor3D, b as tf.Tensor3D),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sa, sb] = saved;
      return [tf.matMul(dy as tf.Tensor3D, swapLast(sb) as tf.Tensor3D), tf.matMul(swapLast(sa) as tf.Tensor3D, dy as tf.Tensor3D)];
    },
  };
}) as Parameters<typeof tf.customGrad>[0]) as (a: tf.Tensor, b: tf.Tensor) => tf.Tensor;

/** `x @ w^T` for a Hugging Face `[out, in]` weight. */
function linear(x2d: tf.Tensor2D, w: tf.Tensor): tf.Tensor2D {
  return mm(x2d, tf.transpose(w)) as tf.Tensor2D;
}

/** x: [B, H, T, D] → rotated with rotate_half. */
function applyRope(x: tf.Tensor4D, cos: tf.Tensor2D, sin: tf.Tensor2D): tf.Tensor4D {
  const D = x.shape[3];
  const [x1, x2] = tf.split(x, [D / 2, D / 2], 3);
  const rot = tf.concat([tf.neg(x2), x1], 3);
  return tf.add(tf.mul(x, cos), tf.mul(rot, sin)) as tf.Tensor4D;
}

/** Logits [B, T, vocab] of a Llama decoder (training-time forward, full causal attention). */
export function forward(c: TinyModelConfig, p: Params, ids: tf.Tensor2D): tf.Tensor3D {
  const [B, T] = ids.shape;
  const g = (n: string) => p.get(n) as tf.Variable;
  const { cos, sin } = ropeTables(T, c.headDim, c.ropeTheta);
  const mask = causalMask(T);
  const rep = c.heads / c.kvHeads;
  const scale = 1 / Math.sqrt(c.headDim);
  // One-hot matmul instead of gather: the wasm backend has no UnsortedSegmentSum for gather's gradient.
  let x = mm(tf.oneHot(tf.reshape(ids, [B * T]), c.vocabSize), g('model.embed_tokens.weight')) as tf.Tensor2D;
  for (let i = 0; i < c.layers; i++) {
    const pre = `model.layers.${i}.`;
    const h = rmsNorm(x, g(`${pre}input_layernorm.weight`), c.rmsNormEps) as tf.Tensor2D;
    const q = applyRope(tf.transpose(tf.reshape(linear(h, g(`${pre}self_attn.q_proj.weight`)), [B, T, c.heads, c.headDim]), [0, 2, 1, 3]), cos, sin);
    const k = applyRope(tf.transpose(tf.reshape(linear(h, g(`${pre}self_attn.k_proj.weight`)), [B, T, c.kvHeads, c.headDim]), [0, 2, 1, 3]), cos, sin);
    const v = tf.transpose(tf.reshape(linear(h, g(`${pre}self_attn.v_proj.weight`)), [B, T, c.kvHeads, c.headDim]), [0, 2, 1, 3]);
    // Query head h uses kv head floor(h / rep) (HF repeat_kv): fold the rep query heads into rows.
    const q3 = tf.unstack(tf.reshape(tf.mul(q, scale), [B * c.kvHeads, rep * T, c.headDim]));
    const k3 = tf.unstack(tf.reshape(k, [B * c.kvHeads, T, c.headDim]));
    const v3 = tf.unstack(tf.reshape(v, [B * c.kvHeads, T, c.headDim]));
    // One 2-D matmul per (row, kv head): tfjs-wasm runs batched matmuls 9-14x slower than the same
    // work as separate 2-D calls (measured here), and the T x T scores are never stacked.
    const outs = q3.map((qi, j) => {
      const s = tf.add(tf.reshape(mm(qi, tf.transpose(k3[j])), [rep, T, T]), mask);
      return mm(tf.reshape(tf.softmax(s, -1), [rep * T, T]), v3[j]);
    });
    const o = tf.reshape(tf.stack(outs), [B, c.heads, T, c.headDim]);
    const o2 = tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [B * T, c.heads * c.headDim]) as tf.Tensor2D;
    x = tf.add(x, linear(o2, g(`${pre}self_attn.o_proj.weight`)));
    const h2 = rmsNorm(x, g(`${pre}post_attention_layernorm.weight`), c.rmsNormEps) as tf.Tensor2D;
    const gate = linear(h2, g(`${pre}mlp.gate_proj.weight`));
    const up = linear(h2, g(`${pre}mlp.up_proj.weight`));
    const act = tf.mul(tf.mul(gate, tf.sigmoid(gate)), up) as tf.Tensor2D;
    x = tf.add(x, linear(act, g(`${pre}mlp.down_proj.weight`)));
  }
  const hf = rmsNorm(x, g('model.norm.weight'), c.rmsNormEps) as tf.Tensor2D;
  return tf.reshape(linear(hf, g('model.embed_tokens.weight')), [B, T, c.vocabSize]);
}

/**
 * Weighted mean next-token cross-entropy; weights [B, T] (0 masks a position). `denominator`
 * replaces the weight sum when a batch is split into micro-batches whose gradients are summed;
 * `onNll` sees the per-position losses (for logging, e.g. the loss on answer tokens alone).
 */
export function weightedLoss(logits: tf.Tensor3D, targets: tf.Tensor2D, weights: tf.Tensor2D, denominator?: number, onNll?: (nll: tf.Tensor1D) => void): tf.Scalar {
  const V = logits.shape[2];
  const lp = tf.logSoftmax(tf.reshape(logits, [-1, V]));
  const oh = tf.oneHot(tf.reshape(targets, [-1]), V);
  const nll = tf.neg(tf.sum(tf.mul(lp, oh), -1)) as tf.Tensor1D;
  onNll?.(nll);
  const w = tf.reshape(weights, [-1]);
  return tf.div(tf.sum(tf.mul(nll, w)), denominator ?? tf.sum(w)) as tf.Scalar;
}
