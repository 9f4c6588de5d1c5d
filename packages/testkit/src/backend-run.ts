import { createContext, disposeLayer, layerFromHost, layerToHost, type HostLayer, type KVCachePolicy, type KVKernels } from '@kvfold/core';
import type { SyntheticCase } from './synthetic.js';

/** One backend's prefill of a policy over a synthetic case (what the backend examples compare). */
export interface BackendRun {
  /** `describe()` of the kernels: what actually ran. */
  readonly describe: string;
  /** The compressed layer, in host memory. */
  readonly layer: HostLayer;
  /** Slots per head after the prefill. */
  readonly kept: number;
  /** Slots standing for more than one token (all heads). */
  readonly mergedSlots: number;
  /** Wall time of observe + prefill, ms (one run, first call included: not a benchmark). */
  readonly ms: number;
}

/** Upload `data`, observe its queries, run `policy.prefill` at `budget` slots on `kernels`, download the result and release everything. */
export async function prefillOn<T>(policy: KVCachePolicy, kernels: KVKernels<T>, data: SyntheticCase, budget: number): Promise<BackendRun> {
  const t0 = performance.now();
  const layer = layerFromHost(kernels, data.layer);
  const q = kernels.fromHost(data.queries);
  const qp = kernels.fromHost(data.queryPositions);
  const seen = kernels.observe(layer, q, qp);
  const out = await policy.prefill(layer, { ...seen, queries: q }, createContext({ kernels, budget, promptLength: data.layer.keys.shape[1]! }));
  const host = await layerToHost(kernels, out);
  const ms = performance.now() - t0;
  kernels.dispose(q, qp, seen.attention, seen.lastAttention);
  disposeLayer(kernels, layer, out);
  disposeLayer(kernels, out);
  return { describe: kernels.describe(), layer: host, kept: host.keys.shape[1]!, mergedSlots: host.counts.data.filter((c) => c > 1).length, ms };
}

/** What {@link compareLayers} finds. */
export interface LayerComparison {
  /** Largest `|a - b| / (1 + |b|)` over keys, values and scores (Infinity when the shapes differ). */
  readonly maxDifference: number;
  /** Positions and counts agree exactly. */
  readonly sameSlots: boolean;
}

/** Largest `|a - b| / (1 + |b|)` over the float fields, and whether the int fields agree exactly. */
export function compareLayers(a: HostLayer, b: HostLayer): LayerComparison {
  let maxDifference = 0;
  for (const f of ['keys', 'values', 'scores'] as const) {
    if (a[f].data.length !== b[f].data.length) return { maxDifference: Infinity, sameSlots: false };
    a[f].data.forEach((x, i) => (maxDifference = Math.max(maxDifference, Math.abs(x - b[f].data[i]!) / (1 + Math.abs(b[f].data[i]!)))));
  }
  const same = (x: Int32Array, y: Int32Array) => x.length === y.length && x.every((v, i) => v === y[i]);
  return { maxDifference, sameSlots: same(a.positions.data, b.positions.data) && same(a.counts.data, b.counts.data) };
}
