import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { hostLayer, hostTensor, type HostLayer, type HostTensor, type KVKernels, type LayerCache } from '@kvfold/core';
import { createOnnxKernels, defaultNativeDir, type OnnxKernels } from '../src/index.js';

/** Deterministic PRNG (mulberry32): fast-check draws a seed, the tensors follow from it. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random integer in [lo, hi]. */
export function randInt(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}

/** Random layer: keys/values in [-2, 2), increasing positions, counts 1..3, scores in [0, 1) (some tied when `ties`). */
export function randomLayer(H: number, L: number, D: number, r: () => number, ties = false): HostLayer {
  const keys = Float32Array.from({ length: H * L * D }, () => r() * 4 - 2);
  const values = Float32Array.from({ length: H * L * D }, () => r() * 4 - 2);
  const positions = new Int32Array(H * L);
  for (let h = 0; h < H; h++) {
    let p = randInt(r, 0, 2);
    for (let i = 0; i < L; i++) {
      positions[h * L + i] = p;
      p += randInt(r, 1, 3);
    }
  }
  const counts = Int32Array.from({ length: H * L }, () => randInt(r, 1, 3));
  const scores = Float32Array.from({ length: H * L }, () => (ties ? randInt(r, 0, 3) / 4 : r()));
  return hostLayer({ heads: H, length: L, headDim: D, keys, values, positions, counts, scores });
}

/** Random float32 tensor in [lo, hi). */
export function randomF32(shape: number[], r: () => number, lo = -2, hi = 2): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return hostTensor('float32', shape, Float32Array.from({ length: n }, () => lo + r() * (hi - lo)));
}

/** `|a - e| <= 1e-5 + 1e-5 |e|` element-wise (float32 outputs), or exact equality (int32). */
export function expectClose(actual: HostTensor, expected: HostTensor, what: string, tol = 1e-5): void {
  if (actual.dtype !== expected.dtype) throw new Error(`${what}: dtype ${actual.dtype} != ${expected.dtype}`);
  if (actual.shape.join(',') !== expected.shape.join(',')) throw new Error(`${what}: shape [${actual.shape}] != [${expected.shape}]`);
  const a = actual.data;
  const e = expected.data;
  for (let i = 0; i < e.length; i++) {
    const ok = actual.dtype === 'int32' ? a[i] === e[i] : Math.abs(a[i]! - e[i]!) <= tol + tol * Math.abs(e[i]!);
    if (!ok) throw new Error(`${what}: element ${i} is ${a[i]}, reference ${e[i]} (shape [${e.length ? expected.shape : ''}])`);
  }
}

/** Download a layer of any backend as host tensors. */
export async function layerHost<T>(k: KVKernels<T>, l: LayerCache<T>): Promise<Record<string, HostTensor>> {
  return {
    keys: await k.toHost(l.keys),
    values: await k.toHost(l.values),
    positions: await k.toHost(l.positions),
    counts: await k.toHost(l.counts),
    scores: await k.toHost(l.scores),
  };
}

/** Compare two downloaded layers field by field. */
export function expectLayerClose(actual: Record<string, HostTensor>, expected: Record<string, HostTensor>, what: string): void {
  for (const f of ['keys', 'values', 'positions', 'counts', 'scores']) expectClose(actual[f]!, expected[f]!, `${what} ${f}`);
}

/** True when `pnpm --filter @kvfold/backend-onnx build:native` has produced a build here. */
export const nativeBuilt = existsSync(join(defaultNativeDir(), 'manifest.json'));

/** The kernel paths to test: function bodies always, native CPU kernels when built. */
export function variants(): { name: string; make: () => OnnxKernels }[] {
  const v = [{ name: 'function bodies', make: () => createOnnxKernels({ native: 'off', threads: 1 }) }];
  // observeKernel 'native': on CPU observe defaults to its function body, and the native kernel needs testing too.
  if (nativeBuilt) v.push({ name: 'native CPU kernels', make: () => createOnnxKernels({ native: 'require', threads: 2, observeKernel: 'native' }) });
  return v;
}
