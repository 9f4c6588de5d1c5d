import { createReferenceKernels } from '@kvfold/backend-reference';
import { hostLayer, hostTensor, layerFromHost, layerToHost, rows, type HostLayer, type HostTensor, type KVKernels, type LayerCache } from '@kvfold/core';

/** Reference kernels that remember every tensor they create, so a test can assert nothing leaks. */
export interface TrackedKernels extends KVKernels<HostTensor> {
  /** Tensors created and not yet disposed. */
  readonly live: Set<HostTensor>;
}

const creators = new Set(['fromHost', 'append', 'accumulate', 'topK', 'gather', 'adjacentCosine', 'mergeSegments', 'mergeIntoNeighbours', 'observe']);

/** Wrap the reference kernels so created tensors are tracked until disposed. */
export function trackedKernels(): TrackedKernels {
  const base = createReferenceKernels();
  const live = new Set<HostTensor>();
  const record = (out: unknown): void => {
    if (out && typeof out === 'object') {
      if ('data' in out && 'shape' in out) live.add(out as HostTensor);
      else for (const v of Object.values(out)) record(v);
    }
  };
  return new Proxy(base, {
    get(target, prop, receiver) {
      if (prop === 'live') return live;
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      if (prop === 'dispose') {
        return (...ts: (HostTensor | undefined)[]) => {
          for (const t of ts) if (t) live.delete(t);
          (value as (...a: unknown[]) => void).apply(target, ts);
        };
      }
      if (creators.has(String(prop))) {
        return (...args: unknown[]) => {
          const out = (value as (...a: unknown[]) => unknown).apply(target, args);
          record(out);
          return out;
        };
      }
      return (value as (...a: unknown[]) => unknown).bind(target);
    },
  }) as TrackedKernels;
}

/** Tensors still alive that belong to none of the given layers or extra tensors. */
export function leaked(k: TrackedKernels, keep: readonly (LayerCache<HostTensor> | HostTensor)[]): number {
  const held = new Set<HostTensor>();
  for (const x of keep) {
    if ('data' in x) held.add(x);
    else for (const t of [x.keys, x.values, x.positions, x.counts, x.scores]) held.add(t);
  }
  return [...k.live].filter((t) => !held.has(t)).length;
}

/** Deterministic pseudo-random floats for keys/values (no RNG state shared with the policy). */
export function ramp(n: number, seed = 1): number[] {
  return Array.from({ length: n }, (_, i) => Math.sin(seed * 12.9898 + i * 78.233) * 2);
}

/** A layer of `heads x length` tokens with head dim `dim`, positions 0..length-1. */
export function makeHostLayer(heads: number, length: number, dim: number, seed = 1, scores?: ArrayLike<number>): HostLayer {
  return hostLayer({ heads, length, headDim: dim, keys: ramp(heads * length * dim, seed), values: ramp(heads * length * dim, seed + 7), scores });
}

/** Upload a host layer. */
export function upload(k: KVKernels<HostTensor>, layer: HostLayer): LayerCache<HostTensor> {
  return layerFromHost(k, layer);
}

/** Deep host copy of a layer, to compare before and after a policy call. */
export async function snapshot(k: KVKernels<HostTensor>, layer: LayerCache<HostTensor>): Promise<Record<string, number[]>> {
  const h = await layerToHost(k, layer);
  return { keys: Array.from(h.keys.data), values: Array.from(h.values.data), positions: Array.from(h.positions.data), counts: Array.from(h.counts.data), scores: Array.from(h.scores.data) };
}

/** Positions of a layer, one array per head. */
export async function positionsOf(k: KVKernels<HostTensor>, layer: LayerCache<HostTensor>): Promise<number[][]> {
  return rows(await k.toHost(layer.positions));
}

/** Row-major float32 `[heads, n]` attention tensor. */
export function attention(k: KVKernels<HostTensor>, perHead: readonly (readonly number[])[]): HostTensor {
  const n = perHead[0]?.length ?? 0;
  return k.fromHost(hostTensor('float32', [perHead.length, n], perHead.flat()));
}
