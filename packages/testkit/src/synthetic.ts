import { createRng, hostLayer, hostTensor, type HostLayer, type HostTensor, type Rng } from '@kvfold/core';

/** Options of {@link syntheticLayer}. */
export interface SyntheticOptions {
  /** kv heads. */
  readonly heads: number;
  /** Tokens in the cache. */
  readonly length: number;
  /** Head dimension. */
  readonly headDim: number;
  /** Query heads (a multiple of `heads`); default `heads`. */
  readonly queryHeads?: number;
  /** Number of observation queries (the last `queries` tokens of the prompt); default `min(length, 8)`. */
  readonly queries?: number;
  /** Seed; default 0. */
  readonly seed?: number;
  /**
   * How strongly each key follows the previous one, in [0, 1): 0 gives independent keys, 0.9 long runs
   * of similar adjacent keys (what KVMerger exploits in real models). Default 0.8.
   */
  readonly drift?: number;
  /**
   * Key norm; default `1.5 * sqrt(headDim)`, which makes a query's attention peak on the key it was drawn
   * near (logit about 0.5 * 2.25 * sqrt(headDim) above the crowd), as real heads are sparse; with
   * `sqrt(headDim)` attention is nearly uniform over long caches and every policy looks alike.
   */
  readonly keyScale?: number;
}

/** A generated cache with the queries that observe it. */
export interface SyntheticCase {
  /** The layer cache (positions 0..L-1, counts 1, scores 0). */
  readonly layer: HostLayer;
  /** Queries float32 `[queryHeads, n, headDim]`. */
  readonly queries: HostTensor<'float32'>;
  /** Positions of the queries, int32 `[n]` (the last n tokens). */
  readonly queryPositions: HostTensor<'int32'>;
}

/**
 * Fixed per-(head, token) importance, lognormal(0, 1.5): a few tokens draw most attention, as the H2O
 * paper observed in real models (attention follows a power law). Observation and probe queries share it,
 * which is the assumption under which attention-based eviction can work at all; `uniform` data removes it.
 */
function tokenImportance(heads: number, length: number, seed: number): Float64Array {
  const rng = createRng(seed).fork(0x1a2b);
  const w = new Float64Array(heads * length);
  for (let i = 0; i < w.length; i++) w[i] = Math.exp(1.5 * gaussian(rng));
  return w;
}

interface QueryShape { heads: number; length: number; headDim: number; queryHeads: number; n: number; rng: Rng }

/** Queries near keys drawn in proportion to their importance (plus noise), float32 `[queryHeads, n, headDim]`. */
function drawQueries(keys: Float32Array, importance: Float64Array, s: QueryShape): Float32Array {
  const { heads, length, headDim, queryHeads, n, rng } = s;
  const queries = new Float32Array(queryHeads * n * headDim);
  const group = queryHeads / heads;
  const cdf = new Float64Array(length);
  for (let q = 0; q < queryHeads; q++) {
    const h = Math.floor(q / group);
    let acc = 0;
    for (let t = 0; t < length; t++) cdf[t] = acc += importance[h * length + t]!;
    for (let i = 0; i < n; i++) {
      const u = rng.next() * acc;
      let lo = 0, hi = length - 1;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (cdf[mid]! < u) lo = mid + 1; else hi = mid; }
      const base = (h * length + lo) * headDim;
      for (let d = 0; d < headDim; d++) queries[(q * n + i) * headDim + d] = keys[base + d]! * 0.5 + gaussian(rng) * 0.5;
    }
  }
  return queries;
}

/**
 * Fresh queries over the same cache as a {@link syntheticLayer} call with the same options, drawn with
 * `probeSeed`: held-out probes for fidelity metrics (they were not used to score the tokens).
 */
export function probeQueries(options: SyntheticOptions, n: number, probeSeed: number): HostTensor<'float32'> {
  const c = syntheticLayer(options);
  const { heads, length, headDim } = options;
  const qh = options.queryHeads ?? heads;
  const data = drawQueries(c.layer.keys.data, tokenImportance(heads, length, options.seed ?? 0), { heads, length, headDim, queryHeads: qh, n, rng: createRng(probeSeed).fork(0x9e37) });
  return hostTensor('float32', [qh, n, headDim], data);
}

function gaussian(rng: Rng): number {
  // Box-Muller; 1 - u keeps log away from 0.
  const u = 1 - rng.next();
  const v = rng.next();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/**
 * Generate a random cache whose keys drift slowly along the sequence (runs of similar adjacent keys),
 * values independent, and queries close to a few random keys so attention is peaked like a real model's.
 */
export function syntheticLayer(options: SyntheticOptions): SyntheticCase {
  const { heads, length, headDim } = options;
  const qh = options.queryHeads ?? heads;
  const n = options.queries ?? Math.min(length, 8);
  const drift = options.drift ?? 0.8;
  const scale = options.keyScale ?? 1.5 * Math.sqrt(headDim);
  const rng = createRng(options.seed ?? 0);
  const keys = new Float32Array(heads * length * headDim);
  const values = new Float32Array(heads * length * headDim);
  const prev = new Float64Array(headDim);
  for (let h = 0; h < heads; h++) {
    for (let t = 0; t < length; t++) {
      let norm = 0;
      for (let d = 0; d < headDim; d++) {
        const x = t === 0 ? gaussian(rng) : drift * prev[d]! + Math.sqrt(1 - drift * drift) * gaussian(rng);
        prev[d] = x;
        norm += x * x;
      }
      norm = Math.sqrt(norm) || 1;
      const base = (h * length + t) * headDim;
      for (let d = 0; d < headDim; d++) {
        keys[base + d] = (prev[d]! / norm) * scale;
        values[base + d] = gaussian(rng);
      }
    }
  }
  const importance = tokenImportance(heads, length, options.seed ?? 0);
  const queries = drawQueries(keys, importance, { heads, length, headDim, queryHeads: qh, n, rng });
  const queryPositions = Int32Array.from({ length: n }, (_, i) => length - n + i);
  return {
    layer: hostLayer({ heads, length, headDim, keys, values }),
    queries: hostTensor('float32', [qh, n, headDim], queries),
    queryPositions: hostTensor('int32', [n], queryPositions),
  };
}
