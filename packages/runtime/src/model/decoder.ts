import * as tf from '@tensorflow/tfjs-core';
import { ModelError, type AttentionHooks, type GroupReduction, type LayerCache } from '@kvfold/core';
import { ropeTables, type LlamaConfig } from './config.js';
import type { HostWeight, LlamaWeights } from './weights.js';


/** Options of {@link LlamaDecoder.forward}. */
export interface ForwardOptions {
  /** Return logits of every token (`[n, vocab]`) or only of the last one (`[1, vocab]`, the default). */
  readonly logits?: 'all' | 'last';
}

/** Options of {@link LlamaDecoder}. */
export interface DecoderOptions {
  /**
   * Queries processed per attention block. Bounds the `[heads, chunk, length]` probability tensor of
   * long prompts; results do not depend on it. Default 256.
   */
  readonly queryChunk?: number;
}

interface TfLinear {
  readonly weight: tf.Tensor2D;
  readonly bias?: tf.Tensor1D;
}

interface TfLayer {
  readonly inputNorm: tf.Tensor1D;
  /** Fused q|k|v projection, `[hidden, (heads + 2 kvHeads) headDim]`: one matmul instead of three. */
  readonly qkv: TfLinear;
  readonly o: TfLinear;
  readonly postNorm: tf.Tensor1D;
  /** Fused gate|up projection, `[hidden, 2 intermediate]`. */
  readonly gateUp: TfLinear;
  readonly down: TfLinear;
}

/** Large negative logit for masked slots: finite, so a fully masked row could never become NaN. */
const MASKED = -1e30;

/**
 * The Llama / Mistral / Qwen2 decoder on TensorFlow.js ops (whatever tfjs backend is active): RMSNorm,
 * HF `rotate_half` RoPE at true positions, grouped-query attention over a {@link LayerCache} without
 * repeating K/V per query head, and a SwiGLU MLP. Weights live on the tfjs backend until {@link dispose}.
 */
export class LlamaDecoder {
  /** The model configuration. */
  readonly config: LlamaConfig;
  private readonly embed: tf.Tensor2D;
  private readonly lmHead: tf.Tensor2D;
  private readonly norm: tf.Tensor1D;
  private readonly layers: TfLayer[];
  private readonly queryChunk: number;
  private disposed = false;

  /** Upload `weights` to the active tfjs backend (projections transposed to `[in, out]` once, here). */
  constructor(config: LlamaConfig, weights: LlamaWeights, options: DecoderOptions = {}) {
    this.config = config;
    this.queryChunk = Math.max(1, Math.floor(options.queryChunk ?? 256));
    const mat = (w: HostWeight): tf.Tensor2D => tf.tensor2d(w.data, w.shape as [number, number], 'float32');
    const vec = (w: HostWeight): tf.Tensor1D => tf.tensor1d(w.data, 'float32');
    const fuse = (parts: readonly { weight: HostWeight; bias?: HostWeight }[]): TfLinear =>
      tf.tidy(() => {
        const weight = tf.transpose(tf.concat(parts.map((p) => mat(p.weight)), 0)) as tf.Tensor2D;
        if (!parts.some((p) => p.bias)) return { weight };
        const bias = tf.concat(parts.map((p) => (p.bias ? vec(p.bias) : tf.zeros([p.weight.shape[0]!]))), 0) as tf.Tensor1D;
        return { weight, bias };
      });
    this.embed = mat(weights.embed);
    this.lmHead = weights.lmHead === weights.embed ? this.embed : mat(weights.lmHead);
    this.norm = vec(weights.norm);
    this.layers = weights.layers.map((l) => ({
      inputNorm: vec(l.inputNorm),
      qkv: fuse([l.q, l.k, l.v]),
      o: fuse([l.o]),
      postNorm: vec(l.postNorm),
      gateUp: fuse([l.gate, l.up]),
      down: fuse([l.down]),
    }));
  }

  /**
   * Run `tokens` (at true `positions`) through every layer, appending their keys and values to the
   * caches through `hooks`, and return logits. The caller owns the returned tensor.
   * @throws ModelError when a token id is outside the vocabulary or positions do not match the tokens.
   */
  forward(tokens: readonly number[], positions: readonly number[], hooks: AttentionHooks<tf.Tensor>, options: ForwardOptions = {}): tf.Tensor2D {
    if (this.disposed) throw new ModelError('the decoder was disposed', { reason: 'disposed' });
    const { vocabSize, heads, kvHeads, headDim: d, hiddenSize } = this.config;
    const n = tokens.length;
    if (n === 0) throw new ModelError('forward needs at least one token', { field: 'tokens' });
    if (positions.length !== n) throw new ModelError(`positions has ${positions.length} entries for ${n} tokens`, { field: 'positions' });
    tokens.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= vocabSize) {
        throw new ModelError(`tokens[${i}] = ${t} is outside the vocabulary 0..${vocabSize - 1}`, { field: 'tokens', allowed: `0..${vocabSize - 1}` });
      }
    });
    const pos = Int32Array.from(positions);
    const { cos: cosHost, sin: sinHost } = ropeTables(this.config, positions);
    const cos = tf.tensor3d(cosHost, [1, n, d]);
    const sin = tf.tensor3d(sinHost, [1, n, d]);
    let x: tf.Tensor2D = tf.tidy(() => tf.gather(this.embed, tf.tensor1d(Int32Array.from(tokens), 'int32')) as tf.Tensor2D);
    try {
      for (let li = 0; li < this.layers.length; li++) {
        const w = this.layers[li]!;
        const [q, k, v] = tf.tidy(() => {
          const h = this.rmsNorm(x, w.inputNorm);
          const qkv = linear(h, w.qkv);
          const [qf, kf, vf] = tf.split(qkv, [heads * d, kvHeads * d, kvHeads * d], 1) as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
          const toHeads = (t: tf.Tensor2D, hs: number) => tf.transpose(tf.reshape(t, [n, hs, d]), [1, 0, 2]) as tf.Tensor3D;
          return [rope(toHeads(qf, heads), cos, sin), rope(toHeads(kf, kvHeads), cos, sin), toHeads(vf, kvHeads)] as const;
        });
        let cache: LayerCache<tf.Tensor>;
        try {
          cache = hooks.append(li, k, v, pos);
        } catch (e) {
          tf.dispose([q, k, v]);
          throw e;
        }
        const { out, observed } = this.attention(q, cache, pos, hooks);
        if (hooks.observe.queries) observed.queries = q;
        else q.dispose();
        if (Object.keys(observed).length > 0) hooks.record(li, observed);
        const next = tf.tidy(() => {
          const attn = tf.reshape(tf.transpose(out, [1, 0, 2]), [n, heads * d]) as tf.Tensor2D;
          const x1 = tf.add(x, linear(attn, w.o)) as tf.Tensor2D;
          const h2 = this.rmsNorm(x1, w.postNorm);
          const gu = linear(h2, w.gateUp);
          const m = this.config.intermediateSize;
          const [g, u] = tf.split(gu, [m, m], 1);
          const act = tf.mul(tf.mul(g!, tf.sigmoid(g!)), u!) as tf.Tensor2D;
          return tf.add(x1, linear(act, w.down)) as tf.Tensor2D;
        });
        out.dispose();
        x.dispose();
        x = next;
      }
      return tf.tidy(() => {
        const last = options.logits === 'all' ? x : (tf.slice(x, [n - 1, 0], [1, hiddenSize]) as tf.Tensor2D);
        return tf.matMul(this.rmsNorm(last, this.norm), this.lmHead, false, true) as tf.Tensor2D;
      });
    } finally {
      x.dispose();
      cos.dispose();
      sin.dispose();
    }
  }

  /**
   * Grouped-query attention of `q [heads, n, d]` over the cache. Queries of a group are stacked as
   * `[kvHeads, group * n, d]` and batch-multiplied against `[kvHeads, L, d]`, so K/V are never repeated.
   *
   * The model's forward pass needs the softmax probabilities anyway, so when the hooks ask for attention
   * this returns their sums and last row reduced to kv heads, instead of leaving the cache owner to run the
   * `observe` kernel (a second logits pass per layer and call). The results equal `observe`'s within
   * 1e-5 (tested), except that they respect a sliding window, which `observe` does not know.
   */
  private attention(q: tf.Tensor3D, cache: LayerCache<tf.Tensor>, pos: Int32Array, hooks: AttentionHooks<tf.Tensor>): { out: tf.Tensor3D; observed: { attention?: tf.Tensor; lastAttention?: tf.Tensor; queries?: tf.Tensor } } {
    const { heads, kvHeads, headDim: d } = this.config;
    const group = heads / kvHeads;
    const n = pos.length;
    const L = cache.keys.shape[1]!;
    const wantSums = hooks.observe.attention;
    const wantLast = hooks.observe.lastAttention;
    const scale = 1 / Math.sqrt(d);
    const window = this.config.slidingWindow;
    const outs: tf.Tensor3D[] = [];
    let sums: tf.Tensor | undefined;
    let last: tf.Tensor | undefined;
    // Slot-side terms shared by every chunk: positions as float [kvHeads, 1, 1, L] and log(count).
    const { slotPos, logCount } = tf.tidy(() => ({
      slotPos: tf.reshape(tf.cast(cache.positions, 'float32'), [kvHeads, 1, 1, L]),
      logCount: hooks.proportional ? tf.reshape(tf.log(tf.cast(cache.counts, 'float32')), [kvHeads, 1, 1, L]) : undefined,
    }));
    try {
      for (let s = 0; s < n; s += this.queryChunk) {
        const c = Math.min(this.queryChunk, n - s);
        const res = tf.tidy(() => {
          const qc = tf.reshape(c === n ? q : tf.slice(q, [0, s, 0], [heads, c, d]), [kvHeads, group * c, d]) as tf.Tensor3D;
          let logits: tf.Tensor = tf.reshape(tf.mul(tf.matMul(qc, cache.keys as tf.Tensor3D, false, true), scale), [kvHeads, group, c, L]);
          const qp = tf.tensor4d(Float32Array.from(pos.subarray(s, s + c)), [1, 1, c, 1]);
          let visible = tf.lessEqual(slotPos, qp);
          if (window !== undefined) visible = tf.logicalAnd(visible, tf.greater(slotPos, tf.sub(qp, window)));
          logits = tf.add(logits, tf.mul(tf.sub(1, tf.cast(visible, 'float32')), MASKED));
          if (logCount) logits = tf.add(logits, logCount);
          const probs = tf.softmax(logits) as tf.Tensor4D;
          const out = tf.reshape(tf.matMul(tf.reshape(probs, [kvHeads, group * c, L]) as tf.Tensor3D, cache.values as tf.Tensor3D), [heads, c, d]) as tf.Tensor3D;
          const chunkSum = wantSums ? tf.sum(probs, 2) : undefined;
          const chunkLast = wantLast && s + c === n ? tf.reshape(tf.slice(probs, [0, 0, c - 1, 0], [kvHeads, group, 1, L]), [kvHeads, group, L]) : undefined;
          return { out, chunkSum, chunkLast };
        });
        outs.push(res.out);
        if (res.chunkSum) {
          if (sums) {
            const prev = sums;
            sums = tf.add(prev, res.chunkSum);
            prev.dispose();
            res.chunkSum.dispose();
          } else {
            sums = res.chunkSum;
          }
        }
        if (res.chunkLast) last = res.chunkLast;
      }
      const out = outs.length === 1 ? outs[0]! : tf.concat(outs, 1);
      if (outs.length > 1) tf.dispose(outs);
      const observed: { attention?: tf.Tensor; lastAttention?: tf.Tensor } = {};
      if (sums) observed.attention = reduceGroup(sums, hooks.groupReduction);
      if (last) observed.lastAttention = reduceGroup(last, hooks.groupReduction);
      return { out, observed };
    } finally {
      tf.dispose([slotPos, ...(logCount ? [logCount] : []), ...(sums ? [sums] : []), ...(last ? [last] : [])]);
    }
  }

  private rmsNorm(x: tf.Tensor2D, w: tf.Tensor1D): tf.Tensor2D {
    const ms = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, this.config.rmsNormEps))), w) as tf.Tensor2D;
  }

  /** Bytes of weights held on the tfjs backend. */
  weightBytes(): number {
    const all = [this.embed, this.norm, ...(this.lmHead === this.embed ? [] : [this.lmHead])];
    for (const l of this.layers) {
      all.push(l.inputNorm, l.postNorm);
      for (const lin of [l.qkv, l.o, l.gateUp, l.down]) all.push(lin.weight, ...(lin.bias ? [lin.bias] : []));
    }
    return all.reduce((s, t) => s + t.size * 4, 0);
  }

  /** Release the weights. Safe to call twice. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const all: tf.Tensor[] = [this.embed, this.lmHead, this.norm];
    for (const l of this.layers) {
      all.push(l.inputNorm, l.postNorm);
      for (const lin of [l.qkv, l.o, l.gateUp, l.down]) all.push(lin.weight, ...(lin.bias ? [lin.bias] : []));
    }
    tf.dispose(all);
  }
}

function linear(x: tf.Tensor2D, lin: TfLinear): tf.Tensor2D {
  const y = tf.matMul(x, lin.weight);
  return (lin.bias ? tf.add(y, lin.bias) : y) as tf.Tensor2D;
}

/** HF `rotate_half` RoPE: `x * cos + cat(-x2, x1) * sin` with `cos`/`sin` `[1, n, d]`. */
function rope(x: tf.Tensor3D, cos: tf.Tensor3D, sin: tf.Tensor3D): tf.Tensor3D {
  const [x1, x2] = tf.split(x, 2, 2) as [tf.Tensor3D, tf.Tensor3D];
  const rotated = tf.concat([tf.neg(x2), x1], 2);
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin)) as tf.Tensor3D;
}

/** Reduce `[kvHeads, group, L]` over the group axis; disposes nothing. */
function reduceGroup(t: tf.Tensor, reduction: GroupReduction): tf.Tensor {
  return tf.tidy(() => (reduction === 'max' ? tf.max(t, 1) : reduction === 'sum' ? tf.sum(t, 1) : tf.mean(t, 1)));
}
