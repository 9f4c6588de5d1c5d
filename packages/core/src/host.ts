import { ShapeError } from './errors.js';
import type { KVKernels, LayerCache } from './kernels.js';
import { hostTensor, type HostTensor } from './tensor.js';

/** A layer cache held in host memory: what {@link layerToHost} returns and {@link layerFromHost} takes. */
export interface HostLayer {
  /** float32 `[kvHeads, length, headDim]`. */
  readonly keys: HostTensor<'float32'>;
  /** float32 `[kvHeads, length, headDim]`. */
  readonly values: HostTensor<'float32'>;
  /** int32 `[kvHeads, length]`. */
  readonly positions: HostTensor<'int32'>;
  /** int32 `[kvHeads, length]`. */
  readonly counts: HostTensor<'int32'>;
  /** float32 `[kvHeads, length]`. */
  readonly scores: HostTensor<'float32'>;
}

/** Input of {@link hostLayer}: only keys and values are required. */
export interface HostLayerInit {
  /** Number of kv heads. */
  readonly heads: number;
  /** Number of tokens. */
  readonly length: number;
  /** Head dimension. */
  readonly headDim: number;
  /** Keys, row-major `[heads, length, headDim]`. */
  readonly keys: ArrayLike<number>;
  /** Values, row-major `[heads, length, headDim]`. */
  readonly values: ArrayLike<number>;
  /** Positions `[heads, length]`; default `0..length-1` on every head. */
  readonly positions?: ArrayLike<number>;
  /** Counts `[heads, length]`; default all 1. */
  readonly counts?: ArrayLike<number>;
  /** Scores `[heads, length]`; default all 0. */
  readonly scores?: ArrayLike<number>;
}

/**
 * Build a host layer from plain arrays, with default positions (token order), counts (1) and scores (0).
 * @throws ShapeError when an array does not match the declared dimensions.
 */
export function hostLayer(init: HostLayerInit): HostLayer {
  const { heads, length, headDim } = init;
  const positions = init.positions ?? Int32Array.from({ length: heads * length }, (_, i) => i % length);
  const counts = init.counts ?? new Int32Array(heads * length).fill(1);
  const scores = init.scores ?? new Float32Array(heads * length);
  return {
    keys: hostTensor('float32', [heads, length, headDim], init.keys),
    values: hostTensor('float32', [heads, length, headDim], init.values),
    positions: hostTensor('int32', [heads, length], positions),
    counts: hostTensor('int32', [heads, length], counts),
    scores: hostTensor('float32', [heads, length], scores),
  };
}

/** Upload a host layer to a backend. */
export function layerFromHost<T>(kernels: KVKernels<T>, layer: HostLayer): LayerCache<T> {
  return {
    keys: kernels.fromHost(layer.keys),
    values: kernels.fromHost(layer.values),
    positions: kernels.fromHost(layer.positions),
    counts: kernels.fromHost(layer.counts),
    scores: kernels.fromHost(layer.scores),
  };
}

/** Download a layer from a backend. */
export async function layerToHost<T>(kernels: KVKernels<T>, layer: LayerCache<T>): Promise<HostLayer> {
  const [keys, values, positions, counts, scores] = await Promise.all([
    kernels.toHost(layer.keys),
    kernels.toHost(layer.values),
    kernels.toHost(layer.positions),
    kernels.toHost(layer.counts),
    kernels.toHost(layer.scores),
  ]);
  return {
    keys: keys as HostTensor<'float32'>,
    values: values as HostTensor<'float32'>,
    positions: positions as HostTensor<'int32'>,
    counts: counts as HostTensor<'int32'>,
    scores: scores as HostTensor<'float32'>,
  };
}

/** Read a `[heads, n]` int32 or float32 host tensor as one array per head (for planning on the host). */
export function rows(t: HostTensor): number[][] {
  if (t.shape.length !== 2) throw new ShapeError(`expected a [heads, n] tensor, got [${t.shape.join(', ')}]`);
  const [h, n] = t.shape as [number, number];
  const out: number[][] = [];
  for (let i = 0; i < h; i++) out.push(Array.from(t.data.subarray(i * n, (i + 1) * n)));
  return out;
}
