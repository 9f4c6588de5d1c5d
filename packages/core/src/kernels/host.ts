import type { ArgCheck } from '../kernel-check.js';
import type { CacheShape, LayerCache } from '../kernels.js';
import type { HostTensor } from '../tensor.js';

/** A float32 host tensor over `data` (no copy, no check: for kernel results built to their shape). */
export function f32(shape: readonly number[], data: Float32Array): HostTensor<'float32'> {
  return { dtype: 'float32', shape, data };
}

/** An int32 host tensor over `data` (no copy, no check). */
export function i32(shape: readonly number[], data: Int32Array): HostTensor<'int32'> {
  return { dtype: 'int32', shape, data };
}

/** The five data arrays of a validated host layer, with its dimensions. */
export interface LayerData extends CacheShape {
  /** float32 `[H, L, D]`. */
  readonly keys: Float32Array;
  /** float32 `[H, L, D]`. */
  readonly values: Float32Array;
  /** int32 `[H, L]`. */
  readonly positions: Int32Array;
  /** int32 `[H, L]`. */
  readonly counts: Int32Array;
  /** float32 `[H, L]`. */
  readonly scores: Float32Array;
}

/** The arrays of a host layer already validated as `dims` (one object shape, so kernel loops stay monomorphic). */
export function layerData(layer: LayerCache<HostTensor>, dims: CacheShape): LayerData {
  return {
    heads: dims.heads,
    length: dims.length,
    headDim: dims.headDim,
    keys: layer.keys.data as Float32Array,
    values: layer.values.data as Float32Array,
    positions: layer.positions.data as Int32Array,
    counts: layer.counts.data as Int32Array,
    scores: layer.scores.data as Float32Array,
  };
}

/** The part every validated call on a layer shares: the layer and its checked dimensions. */
export interface LayerCall<T = unknown> {
  /** The layer the kernel works on. */
  readonly layer: LayerCache<T>;
  /** Its dimensions. */
  readonly dims: CacheShape;
}

/** A validated call on a layer's keys alone (`adjacentCosine`, `keyNorms`). */
export interface KeysCall<T = unknown> {
  /** float32 `[kvHeads, length, headDim]`. */
  readonly keys: T;
  /** Its dimensions. */
  readonly shape: readonly [number, number, number];
}

/** Validate the keys argument of `kernel`: float32 `[kvHeads, length, headDim]`. */
export function keysCall(check: ArgCheck, keys: unknown, kernel: string): KeysCall {
  return { keys, shape: check.tensor(keys, `${kernel} keys`, 'float32', 3) as [number, number, number] };
}

/** The data arrays of a host layer being built. */
export interface LayerArrays {
  /** float32 `[H, M, D]`. */
  readonly keys: Float32Array;
  /** float32 `[H, M, D]`. */
  readonly values: Float32Array;
  /** int32 `[H, M]`. */
  readonly positions: Int32Array;
  /** int32 `[H, M]`. */
  readonly counts: Int32Array;
  /** float32 `[H, M]`. */
  readonly scores: Float32Array;
}

/** Zeroed arrays for a host layer of `M` slots per head (what a reference kernel fills). */
export function layerArrays(H: number, M: number, D: number): LayerArrays {
  return { keys: new Float32Array(H * M * D), values: new Float32Array(H * M * D), positions: new Int32Array(H * M), counts: new Int32Array(H * M), scores: new Float32Array(H * M) };
}

/** A host layer over filled {@link LayerArrays} (no copy). */
export function hostLayerOf(H: number, M: number, D: number, a: LayerArrays): LayerCache<HostTensor> {
  return { keys: f32([H, M, D], a.keys), values: f32([H, M, D], a.values), positions: i32([H, M], a.positions), counts: i32([H, M], a.counts), scores: f32([H, M], a.scores) };
}
