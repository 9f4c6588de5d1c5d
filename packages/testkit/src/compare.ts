import { layerToHost, type HostLayer, type HostTensor, type KVKernels, type LayerCache } from '@kvfold/core';

/**
 * Comparisons for kernel and policy tests: parity with the reference backend and "the input was not
 * mutated" checks. They throw (or return) a message naming the first difference.
 * @module
 */

/**
 * Element-wise `|a - e| <= tol * (1 + |e|)` for float32 (1e-5 relative with an absolute floor of the same
 * size near 0; equal non-finite values match), exact equality for int32; throws naming the first difference.
 */
export function expectClose(actual: HostTensor, expected: HostTensor, what: string, tol = 1e-5): void {
  const problem = closeness(actual, expected, what, tol);
  if (problem) throw new Error(problem);
}

/** What {@link expectClose} would throw, or undefined when the tensors agree. */
export function closeness(actual: HostTensor, expected: HostTensor, what: string, tol = 1e-5): string | undefined {
  if (actual.dtype !== expected.dtype) return `${what}: dtype ${actual.dtype} != ${expected.dtype}`;
  if (actual.shape.join(',') !== expected.shape.join(',')) return `${what}: shape [${actual.shape}] != [${expected.shape}]`;
  const a = actual.data;
  const e = expected.data;
  for (let i = 0; i < e.length; i++) {
    const ok = actual.dtype === 'int32' ? a[i] === e[i] : Object.is(a[i], e[i]) || a[i] === e[i] || Math.abs(a[i]! - e[i]!) <= tol * (1 + Math.abs(e[i]!));
    if (!ok) return `${what}: element ${i} is ${a[i]}, reference ${e[i]} (shape [${expected.shape}])`;
  }
  return undefined;
}

/** The five fields of a layer, in a fixed order. */
export const LAYER_FIELDS = ['keys', 'values', 'positions', 'counts', 'scores'] as const;

/** Download a layer of any backend. */
export function layerHost<T>(k: KVKernels<T>, l: LayerCache<T>): Promise<HostLayer> {
  return layerToHost(k, l);
}

/** Compare two downloaded layers field by field with {@link expectClose}. */
export function expectLayerClose(actual: HostLayer, expected: HostLayer, what: string, tol = 1e-5): void {
  for (const f of LAYER_FIELDS) expectClose(actual[f], expected[f], `${what} ${f}`, tol);
}

/** Deep host copy of a layer as plain arrays, to compare before and after a call (mutation, determinism). */
export async function snapshot<T>(k: KVKernels<T>, layer: LayerCache<T>): Promise<Record<string, number[]>> {
  const h = await layerToHost(k, layer);
  return Object.fromEntries(LAYER_FIELDS.map((f) => [f, Array.from(h[f].data)]));
}

/** Largest absolute difference of two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
