import { createReferenceKernels } from '@kvfold/backend-reference';
import {
  createContext,
  createRng,
  hostLayer,
  hostTensor,
  layerFromHost,
  layerToHost,
  type HostLayer,
  type HostTensor,
  type KVKernels,
  type LayerCache,
  type Logger,
  type PolicyContext,
} from '@kvfold/core';

/** Reference kernels that also track which tensors they created and which were disposed. */
export interface Tracked {
  readonly kernels: KVKernels<HostTensor>;
  /** Tensors created by a kernel call and not yet disposed. */
  readonly live: Set<HostTensor>;
}

function isTensor(x: unknown): x is HostTensor {
  return typeof x === 'object' && x !== null && 'dtype' in x && 'shape' in x && 'data' in x;
}

/** Wrap the reference kernels so every tensor they return is tracked until disposed. */
export function tracked(): Tracked {
  const inner = createReferenceKernels();
  const live = new Set<HostTensor>();
  const collect = (x: unknown): void => {
    if (isTensor(x)) live.add(x);
    else if (typeof x === 'object' && x !== null && !(x instanceof Promise)) for (const v of Object.values(x)) collect(v);
  };
  const passThrough = new Set(['toHost', 'shapeOf', 'dtypeOf', 'allFinite', 'describe', 'backend']);
  const kernels = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function' || passThrough.has(String(prop))) return typeof v === 'function' ? v.bind(target) : v;
      if (prop === 'dispose') {
        return (...ts: (HostTensor | undefined)[]) => {
          for (const t of ts) if (t) live.delete(t);
          target.dispose(...ts);
        };
      }
      return (...args: unknown[]) => {
        const r = (v as (...a: unknown[]) => unknown).apply(target, args);
        collect(r);
        return r;
      };
    },
  });
  return { kernels, live };
}

/** Seeded uniform numbers in [lo, hi). */
export function uniform(seed: number, n: number, lo = -1, hi = 1): Float32Array {
  const rng = createRng(seed);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * rng.next());
}

/**
 * Keys that drift slowly (a random walk per head), so adjacent keys are similar as in real models,
 * with occasional jumps.
 */
export function walkKeys(seed: number, heads: number, length: number, dim: number): Float32Array {
  const rng = createRng(seed);
  const out = new Float32Array(heads * length * dim);
  for (let h = 0; h < heads; h++) {
    const cur = Array.from({ length: dim }, () => rng.next() * 2 - 1);
    for (let i = 0; i < length; i++) {
      const jump = rng.next() < 0.15;
      for (let d = 0; d < dim; d++) {
        cur[d] = jump ? rng.next() * 2 - 1 : cur[d]! + 0.2 * (rng.next() - 0.5);
        out[(h * length + i) * dim + d] = cur[d]!;
      }
    }
  }
  return out;
}

/** Upload a host layer and an attention tensor. */
export function upload(k: KVKernels<HostTensor>, host: HostLayer, attention: ArrayLike<number>): { layer: LayerCache<HostTensor>; attention: HostTensor } {
  const [h, n] = host.scores.shape as [number, number];
  return { layer: layerFromHost(k, host), attention: k.fromHost(hostTensor('float32', [h, n], attention)) };
}

/** Deep copy of a layer's host arrays, for "input never mutated" checks and determinism. */
export async function snapshot(k: KVKernels<HostTensor>, layer: LayerCache<HostTensor>): Promise<Record<string, number[]>> {
  const h = await layerToHost(k, layer);
  return {
    keys: Array.from(h.keys.data),
    values: Array.from(h.values.data),
    positions: Array.from(h.positions.data),
    counts: Array.from(h.counts.data),
    scores: Array.from(h.scores.data),
  };
}

/** A logger that records every call. */
export function recordingLogger(): Logger & { readonly lines: { level: string; message: string; fields?: Record<string, unknown> }[] } {
  const lines: { level: string; message: string; fields?: Record<string, unknown> }[] = [];
  const at = (level: string) => (message: string, fields?: Record<string, unknown>) => void lines.push({ level, message, fields });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn') };
}

/** A context for the given kernels. */
export function context(k: KVKernels<HostTensor>, budget: number, promptLength: number, extra: Partial<Parameters<typeof createContext<HostTensor>>[0]> = {}): PolicyContext<HostTensor> {
  return createContext({ kernels: k, budget, promptLength, ...extra });
}

export { hostLayer };
