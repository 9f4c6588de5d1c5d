import { ModelError, hostLayer, type GroupReduction, type HostLayer } from '@kvfold/core';
import { ropeTables, type LlamaConfig } from '../model/config.js';
import type { HostWeight, Linear, LlamaWeights } from '../model/weights.js';

/** Options of {@link referenceForward}. */
export interface ReferenceOptions {
  /** Positions of the new tokens; default continue after the largest cached position (or 0..n-1). */
  readonly positions?: readonly number[];
  /** Per-layer caches to extend (keys post-RoPE); default empty. Not mutated. */
  readonly caches?: readonly HostLayer[];
  /** Add `log(count)` to the logit of each slot. Default false. */
  readonly proportional?: boolean;
  /** Reduction of a GQA group's query heads for the returned attention. Default `mean`. */
  readonly groupReduction?: GroupReduction;
}

/** What {@link referenceForward} returns. */
export interface ReferenceResult {
  /** Logits of every new token, row-major `[n, vocab]`. */
  readonly logits: Float32Array;
  /** Per-layer caches after appending the new tokens (new objects). */
  readonly caches: HostLayer[];
  /** Per layer: sum over the new queries of each slot's attention, reduced to kv heads, `[kvHeads * length]`. */
  readonly attention: Float32Array[];
  /** Per layer: attention of the last new query alone, `[kvHeads * length]`. */
  readonly lastAttention: Float32Array[];
}

function rmsNorm(x: Float64Array, w: HostWeight, eps: number): Float64Array {
  let ms = 0;
  for (let i = 0; i < x.length; i++) ms += x[i]! * x[i]!;
  const r = 1 / Math.sqrt(ms / x.length + eps);
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i]! * r * w.data[i]!;
  return out;
}

function linear(x: Float64Array, lin: Linear): Float64Array {
  const [outDim, inDim] = lin.weight.shape as [number, number];
  const w = lin.weight.data;
  const out = new Float64Array(outDim);
  for (let o = 0; o < outDim; o++) {
    let s = lin.bias ? lin.bias.data[o]! : 0;
    const row = o * inDim;
    for (let i = 0; i < inDim; i++) s += w[row + i]! * x[i]!;
    out[o] = s;
  }
  return out;
}

/** HF `rotate_half` RoPE applied in place to each `headDim` chunk of `x`. */
function rope(x: Float64Array, heads: number, d: number, cos: Float32Array, sin: Float32Array, t: number): void {
  const half = d / 2;
  for (let h = 0; h < heads; h++) {
    const b = h * d;
    for (let i = 0; i < half; i++) {
      const x1 = x[b + i]!;
      const x2 = x[b + i + half]!;
      x[b + i] = x1 * cos[t * d + i]! - x2 * sin[t * d + i]!;
      x[b + i + half] = x2 * cos[t * d + i + half]! + x1 * sin[t * d + i + half]!;
    }
  }
}

function emptyLayer(kvHeads: number, headDim: number): HostLayer {
  return hostLayer({ heads: kvHeads, length: 0, headDim, keys: [], values: [] });
}

/**
 * Plain-loop forward pass of the Llama decoder, the ground truth the tfjs decoder is tested against.
 * It implements the runtime's exact semantics: keys cached post-RoPE, new slots appended after the
 * cache, a query at position `p` attending to every slot whose position is `<= p` (and inside the
 * sliding window, if any), optional proportional attention, and attention reduced to kv heads.
 * Accumulates in float64; slow by design.
 * @throws ModelError when a token id is outside the vocabulary or the caches do not match the config.
 */
export function referenceForward(config: LlamaConfig, weights: LlamaWeights, tokens: readonly number[], options: ReferenceOptions = {}): ReferenceResult {
  const { hiddenSize: hidden, heads, kvHeads, headDim: d, vocabSize } = config;
  const n = tokens.length;
  const group = heads / kvHeads;
  const reduction = options.groupReduction ?? 'mean';
  const caches = options.caches ?? Array.from({ length: config.layers }, () => emptyLayer(kvHeads, d));
  if (caches.length !== config.layers) throw new ModelError(`caches: ${caches.length} layers given, the model has ${config.layers}`, { field: 'caches' });
  tokens.forEach((t, i) => {
    if (!Number.isInteger(t) || t < 0 || t >= vocabSize) throw new ModelError(`tokens[${i}] = ${t} is outside the vocabulary 0..${vocabSize - 1}`, { field: 'tokens', allowed: `0..${vocabSize - 1}` });
  });
  let positions = options.positions;
  if (!positions) {
    let next = 0;
    const p0 = caches[0]!.positions.data;
    for (let i = 0; i < p0.length; i++) next = Math.max(next, p0[i]! + 1);
    positions = tokens.map((_, i) => next + i);
  }
  const { cos, sin } = ropeTables(config, positions);
  const scale = 1 / Math.sqrt(d);

  let xs: Float64Array[] = tokens.map((t) => Float64Array.from(weights.embed.data.subarray(t * hidden, (t + 1) * hidden)));
  const outCaches: HostLayer[] = [];
  const attention: Float32Array[] = [];
  const lastAttention: Float32Array[] = [];

  for (let li = 0; li < config.layers; li++) {
    const w = weights.layers[li]!;
    const cache = caches[li]!;
    const L0 = cache.keys.shape[1]!;
    const L = L0 + n;
    // Append this call's keys and values after the cached slots (each head gets the same new tokens).
    const keys = new Float32Array(kvHeads * L * d);
    const values = new Float32Array(kvHeads * L * d);
    const pos = new Int32Array(kvHeads * L);
    const counts = new Int32Array(kvHeads * L);
    const scores = new Float32Array(kvHeads * L);
    for (let h = 0; h < kvHeads; h++) {
      keys.set(cache.keys.data.subarray(h * L0 * d, (h + 1) * L0 * d), h * L * d);
      values.set(cache.values.data.subarray(h * L0 * d, (h + 1) * L0 * d), h * L * d);
      pos.set(cache.positions.data.subarray(h * L0, (h + 1) * L0), h * L);
      counts.set(cache.counts.data.subarray(h * L0, (h + 1) * L0), h * L);
      scores.set(cache.scores.data.subarray(h * L0, (h + 1) * L0), h * L);
    }
    const qs: Float64Array[] = [];
    for (let t = 0; t < n; t++) {
      const hn = rmsNorm(xs[t]!, w.inputNorm, config.rmsNormEps);
      const q = linear(hn, w.q);
      const k = linear(hn, w.k);
      const v = linear(hn, w.v);
      rope(q, heads, d, cos, sin, t);
      rope(k, kvHeads, d, cos, sin, t);
      qs.push(q);
      for (let h = 0; h < kvHeads; h++) {
        const slot = h * L + L0 + t;
        for (let i = 0; i < d; i++) {
          keys[slot * d + i] = k[h * d + i]!;
          values[slot * d + i] = v[h * d + i]!;
        }
        pos[slot] = positions[t]!;
        counts[slot] = 1;
      }
    }
    const perHeadSums = new Float64Array(heads * L);
    const perHeadLast = new Float64Array(heads * L);
    const next: Float64Array[] = [];
    const probs = new Float64Array(L);
    for (let t = 0; t < n; t++) {
      const p = positions[t]!;
      const attnOut = new Float64Array(heads * d);
      for (let qh = 0; qh < heads; qh++) {
        const kv = Math.floor(qh / group);
        let max = -Infinity;
        for (let l = 0; l < L; l++) {
          const sp = pos[kv * L + l]!;
          const visible = sp <= p && (config.slidingWindow === undefined || p - sp < config.slidingWindow);
          if (!visible) {
            probs[l] = -Infinity;
            continue;
          }
          let s = 0;
          for (let i = 0; i < d; i++) s += qs[t]![qh * d + i]! * keys[(kv * L + l) * d + i]!;
          s *= scale;
          if (options.proportional) s += Math.log(counts[kv * L + l]!);
          probs[l] = s;
          if (s > max) max = s;
        }
        let z = 0;
        for (let l = 0; l < L; l++) {
          const e = probs[l] === -Infinity ? 0 : Math.exp(probs[l]! - max);
          probs[l] = e;
          z += e;
        }
        for (let l = 0; l < L; l++) {
          const pr = probs[l]! / z;
          perHeadSums[qh * L + l]! += pr;
          if (t === n - 1) perHeadLast[qh * L + l] = pr;
          if (pr === 0) continue;
          for (let i = 0; i < d; i++) attnOut[qh * d + i]! += pr * values[(kv * L + l) * d + i]!;
        }
      }
      const o = linear(attnOut, w.o);
      const x = new Float64Array(hidden);
      for (let i = 0; i < hidden; i++) x[i] = xs[t]![i]! + o[i]!;
      const h2 = rmsNorm(x, w.postNorm, config.rmsNormEps);
      const gate = linear(h2, w.gate);
      const up = linear(h2, w.up);
      for (let i = 0; i < gate.length; i++) gate[i] = (gate[i]! / (1 + Math.exp(-gate[i]!))) * up[i]!;
      const down = linear(gate, w.down);
      for (let i = 0; i < hidden; i++) x[i] = x[i]! + down[i]!;
      next.push(x);
    }
    xs = next;
    outCaches.push(hostLayer({ heads: kvHeads, length: L, headDim: d, keys, values, positions: pos, counts, scores }));
    attention.push(reduceGroups(perHeadSums, kvHeads, group, L, reduction));
    lastAttention.push(reduceGroups(perHeadLast, kvHeads, group, L, reduction));
  }

  const logits = new Float32Array(n * vocabSize);
  for (let t = 0; t < n; t++) {
    const h = rmsNorm(xs[t]!, weights.norm, config.rmsNormEps);
    const row = linear(h, { weight: weights.lmHead });
    logits.set(row, t * vocabSize);
  }
  return { logits, caches: outCaches, attention, lastAttention };
}

/** Reduce `[heads, L]` per-query-head rows to `[kvHeads, L]` over each GQA group. */
export function reduceGroups(perHead: Float64Array | Float32Array, kvHeads: number, group: number, L: number, reduction: GroupReduction): Float32Array {
  const out = new Float32Array(kvHeads * L);
  for (let kv = 0; kv < kvHeads; kv++) {
    for (let l = 0; l < L; l++) {
      let acc = reduction === 'max' ? -Infinity : 0;
      for (let j = 0; j < group; j++) {
        const v = perHead[(kv * group + j) * L + l]!;
        acc = reduction === 'max' ? Math.max(acc, v) : acc + v;
      }
      out[kv * L + l] = reduction === 'mean' ? acc / group : acc;
    }
  }
  return out;
}
