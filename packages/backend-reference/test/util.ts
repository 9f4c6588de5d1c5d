import { createRng, hostLayer, hostTensor, type HostLayer, type HostTensor, type LayerCache } from '@kvfold/core';

/** Deterministic uniform source in [0, 1) (core's seeded RNG), so property tests derive tensor contents from one fast-check seed. */
export function rng(seed: number): () => number {
  const g = createRng(seed);
  return () => g.next();
}

/** Random layer with sorted distinct positions per head, counts 1..3 and scores in [0, 1). */
export function randomLayer(heads: number, length: number, headDim: number, seed: number): HostLayer {
  const r = rng(seed);
  const n = heads * length * headDim;
  const keys = Float32Array.from({ length: n }, () => r() * 4 - 2);
  const values = Float32Array.from({ length: n }, () => r() * 4 - 2);
  const positions = new Int32Array(heads * length);
  for (let h = 0; h < heads; h++) {
    let p = 0;
    for (let i = 0; i < length; i++) {
      p += 1 + Math.floor(r() * 3);
      positions[h * length + i] = p;
    }
  }
  const counts = Int32Array.from({ length: heads * length }, () => 1 + Math.floor(r() * 3));
  const scores = Float32Array.from({ length: heads * length }, () => r());
  return hostLayer({ heads, length, headDim, keys, values, positions, counts, scores });
}

/** Deep copy of a layer's arrays, to check later that a kernel did not mutate its input. */
export function snapshot(layer: LayerCache<HostTensor>): number[][] {
  return [layer.keys, layer.values, layer.positions, layer.counts, layer.scores].map((t) => Array.from(t.data));
}

/** Plain arrays of every field, for deep equality. */
export function plain(layer: LayerCache<HostTensor>): Record<string, { shape: number[]; data: number[] }> {
  const out: Record<string, { shape: number[]; data: number[] }> = {};
  for (const f of ['keys', 'values', 'positions', 'counts', 'scores'] as const) out[f] = { shape: [...layer[f].shape], data: Array.from(layer[f].data) };
  return out;
}

/** float32 tensor shorthand. */
export const f32 = (shape: number[], data: ArrayLike<number>): HostTensor => hostTensor('float32', shape, data);
/** int32 tensor shorthand. */
export const i32 = (shape: number[], data: ArrayLike<number>): HostTensor => hostTensor('int32', shape, data);

/** Assert element-wise closeness with an absolute tolerance, reporting the first bad index. */
export function close(actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-6): void {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} != ${expected.length}`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (!(Math.abs(a - e) <= tol)) throw new Error(`element ${i}: ${a} is not within ${tol} of ${e} (actual ${JSON.stringify(Array.from(actual))})`);
  }
}

/**
 * Direct per-query observe, written as plainly as possible (one query head and one query at a time,
 * Math.max/Array.reduce): an independent oracle for the optimised kernel.
 */
export function bruteObserve(
  layer: LayerCache<HostTensor>,
  queries: HostTensor,
  queryPositions: HostTensor,
  reduction: 'mean' | 'max' | 'sum',
  scale: number,
  proportional: boolean,
): { attention: number[]; lastAttention: number[] } {
  const [H, L, D] = layer.keys.shape as [number, number, number];
  const [QH, n] = queries.shape as [number, number];
  const G = QH / H;
  const perQ = (q: number, t: number): number[] => {
    const h = Math.floor(q / G);
    const logits: number[] = [];
    for (let j = 0; j < L; j++) {
      if (layer.positions.data[h * L + j]! > queryPositions.data[t]!) {
        logits.push(Number.NEGATIVE_INFINITY);
        continue;
      }
      let dot = 0;
      for (let d = 0; d < D; d++) dot += queries.data[(q * n + t) * D + d]! * layer.keys.data[(h * L + j) * D + d]!;
      logits.push(scale * dot + (proportional ? Math.log(layer.counts.data[h * L + j]!) : 0));
    }
    const m = Math.max(...logits);
    if (m === Number.NEGATIVE_INFINITY) return logits.map(() => 0);
    const e = logits.map((z) => Math.exp(z - m));
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((x) => x / s);
  };
  const sums: number[] = [];
  const last: number[] = [];
  for (let h = 0; h < H; h++) {
    const perHeadSum: number[][] = [];
    const perHeadLast: number[][] = [];
    for (let g = 0; g < G; g++) {
      const rowsT = Array.from({ length: n }, (_, t) => perQ(h * G + g, t));
      perHeadSum.push(Array.from({ length: L }, (_, j) => rowsT.reduce((a, r) => a + r[j]!, 0)));
      perHeadLast.push(n > 0 ? rowsT[n - 1]! : new Array(L).fill(0));
    }
    const red = (xs: number[]) => (reduction === 'max' ? Math.max(...xs) : xs.reduce((a, b) => a + b, 0) / (reduction === 'mean' ? G : 1));
    for (let j = 0; j < L; j++) {
      sums.push(red(perHeadSum.map((r) => r[j]!)));
      last.push(red(perHeadLast.map((r) => r[j]!)));
    }
  }
  return { attention: sums, lastAttention: last };
}
