import { ShapeError, type HostLayer, type HostTensor } from '@kvfold/core';

/**
 * Attention outputs of `queries` over a host cache, float32 `[queryHeads, n, headDim]`, with every
 * slot visible (the queries come after the cache). `proportional` adds log(count) to merged slots'
 * logits. Computed in float64 on the host: a metric, not a kernel.
 */
export function attentionOutput(layer: HostLayer, queries: HostTensor<'float32'>, proportional = false): Float32Array {
  const [heads, length, headDim] = layer.keys.shape as [number, number, number];
  const [qh, n, qd] = queries.shape as [number, number, number];
  if (qd !== headDim || qh % heads !== 0) throw new ShapeError(`queries [${queries.shape.join(', ')}] do not fit keys [${layer.keys.shape.join(', ')}]`);
  const group = qh / heads;
  const scale = 1 / Math.sqrt(headDim);
  const out = new Float32Array(qh * n * headDim);
  const logits = new Float64Array(length);
  const acc = new Float64Array(headDim);
  const K = layer.keys.data, V = layer.values.data, C = layer.counts.data, Q = queries.data;
  for (let q = 0; q < qh; q++) {
    const h = Math.floor(q / group);
    for (let i = 0; i < n; i++) {
      const qBase = (q * n + i) * headDim;
      let max = -Infinity;
      for (let t = 0; t < length; t++) {
        const kBase = (h * length + t) * headDim;
        let dot = 0;
        for (let d = 0; d < headDim; d++) dot += Q[qBase + d]! * K[kBase + d]!;
        let l = dot * scale;
        if (proportional) l += Math.log(Math.max(1, C[h * length + t]!));
        logits[t] = l;
        if (l > max) max = l;
      }
      let sum = 0;
      for (let t = 0; t < length; t++) sum += logits[t] = Math.exp(logits[t]! - max);
      acc.fill(0);
      for (let t = 0; t < length; t++) {
        const w = logits[t]! / sum;
        const vBase = (h * length + t) * headDim;
        for (let d = 0; d < headDim; d++) acc[d]! += w * V[vBase + d]!;
      }
      out.set(acc, qBase);
    }
  }
  return out;
}

/** `||a - b|| / ||a||` (0 when both are zero): the fidelity metric of a compressed attention output. */
export function relativeError(reference: ArrayLike<number>, approx: ArrayLike<number>): number {
  if (reference.length !== approx.length) throw new ShapeError(`length ${approx.length} differs from reference ${reference.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < reference.length; i++) {
    const d = reference[i]! - approx[i]!;
    num += d * d;
    den += reference[i]! * reference[i]!;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}
