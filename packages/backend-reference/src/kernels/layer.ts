import type { HostTensor, LayerCache } from '@kvfold/core';
import type { WasmHeap, WasmPool } from '../wasm-heap.js';

/** The five arrays of a host layer, in the kernels' argument order. */
export type LayerArrays = [keys: Float32Array, values: Float32Array, positions: Int32Array, counts: Int32Array, scores: Float32Array];

/** A layer's arrays in the kernels' argument order (keys, values, positions, counts, scores). */
export function arraysOf(layer: LayerCache<HostTensor>): LayerArrays {
  return [layer.keys.data as Float32Array, layer.values.data as Float32Array, layer.positions.data as Int32Array, layer.counts.data as Int32Array, layer.scores.data as Float32Array];
}

/** Heap pointers of `arrays`, or undefined when any of them lives outside the heap (the caller then runs the reference). */
export function pointers(heap: WasmHeap, arrays: readonly (Float32Array | Int32Array | Float64Array)[]): number[] | undefined {
  const out: number[] = [];
  for (const a of arrays) {
    const p = heap.pointer(a);
    if (p < 0) return undefined;
    out.push(p);
  }
  return out;
}

/** A new layer of `M` slots per head from `pool` (contents unspecified). */
export function allocLayer(pool: WasmPool, H: number, M: number, D: number): LayerArrays {
  return [pool.float32(H * M * D), pool.float32(H * M * D), pool.int32(H * M), pool.int32(H * M), pool.float32(H * M)];
}

/** The layer over `a` (no copy). */
export function layerOf(H: number, M: number, D: number, a: LayerArrays): LayerCache<HostTensor> {
  return {
    keys: { dtype: 'float32', shape: [H, M, D], data: a[0] },
    values: { dtype: 'float32', shape: [H, M, D], data: a[1] },
    positions: { dtype: 'int32', shape: [H, M], data: a[2] },
    counts: { dtype: 'int32', shape: [H, M], data: a[3] },
    scores: { dtype: 'float32', shape: [H, M], data: a[4] },
  };
}

/**
 * Run a wasm layer kernel: allocate the output layer, and when every input array (`inputs`) and output
 * array is in the heap, call `run` with their pointers (inputs first); otherwise give the output back
 * and return undefined so the caller runs the TypeScript reference.
 */
export function runLayerKernel(
  pool: WasmPool,
  inputs: readonly (Float32Array | Int32Array)[],
  H: number,
  M: number,
  D: number,
  run: (inputs: number[], outputs: number[]) => void,
): LayerCache<HostTensor> | undefined {
  const ins = pointers(pool.heap, inputs);
  if (!ins) return undefined;
  const out = allocLayer(pool, H, M, D);
  const outs = pointers(pool.heap, out);
  if (!outs) {
    for (const a of out) pool.release(a);
    return undefined;
  }
  run(ins, outs);
  return layerOf(H, M, D, out);
}
