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
  /** Typical key norm; default `sqrt(headDim)`. */
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
  const scale = options.keyScale ?? Math.sqrt(headDim);
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
  const queries = new Float32Array(qh * n * headDim);
  const group = qh / heads;
  for (let q = 0; q < qh; q++) {
    const h = Math.floor(q / group);
    for (let i = 0; i < n; i++) {
      const target = rng.int(length);
      const base = (h * length + target) * headDim;
      for (let d = 0; d < headDim; d++) queries[(q * n + i) * headDim + d] = keys[base + d]! * 0.5 + gaussian(rng) * 0.5;
    }
  }
  const queryPositions = Int32Array.from({ length: n }, (_, i) => length - n + i);
  return {
    layer: hostLayer({ heads, length, headDim, keys, values }),
    queries: hostTensor('float32', [qh, n, headDim], queries),
    queryPositions: hostTensor('int32', [n], queryPositions),
  };
}
