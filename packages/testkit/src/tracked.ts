import { createReferenceKernels } from '@kvfold/backend-reference';
import { hostLayer, hostTensor, layerFromHost, rows, type HostLayer, type HostTensor, type KVKernels, type LayerCache, type Logger } from '@kvfold/core';

/** Kernels that remember every tensor they created and not yet disposed, so a test can assert nothing leaks. */
export interface TrackedKernels<T = HostTensor> extends KVKernels<T> {
  /** Tensors created and not yet disposed. */
  readonly live: Set<T>;
}

/**
 * Wrap kernels (default: the reference's) so that every tensor a kernel or `fromHost` returns is tracked
 * until disposed. The kernels that create tensors are those the kernels list themselves (`kernels()`), so
 * a new kernel is tracked without touching this file.
 */
export function trackedKernels<T = HostTensor>(base: KVKernels<T> = createReferenceKernels() as unknown as KVKernels<T>): TrackedKernels<T> {
  const live = new Set<T>();
  const creators = new Set(['fromHost', 'run', ...base.kernels().map((i) => i.name)]);
  const isTensor = (x: unknown): boolean => {
    try {
      base.shapeOf(x as T);
      return true;
    } catch {
      return false;
    }
  };
  const record = (out: unknown): void => {
    if (out === null || typeof out !== 'object' || out instanceof Promise) return;
    if (isTensor(out)) live.add(out as T);
    else for (const v of Object.values(out)) record(v);
  };
  return new Proxy(base, {
    get(target, prop, receiver) {
      if (prop === 'live') return live;
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      if (prop === 'dispose') {
        return (...ts: (T | undefined)[]) => {
          for (const t of ts) if (t !== undefined) live.delete(t);
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
  }) as TrackedKernels<T>;
}

/** Tensors still alive that belong to none of the given layers or extra tensors. */
export function leaked<T>(k: TrackedKernels<T>, keep: readonly (LayerCache<T> | T)[]): number {
  const held = new Set<T>();
  for (const x of keep) {
    const l = x as LayerCache<T>;
    if (typeof x === 'object' && x !== null && 'keys' in l && 'scores' in l) for (const t of [l.keys, l.values, l.positions, l.counts, l.scores]) held.add(t);
    else held.add(x as T);
  }
  return [...k.live].filter((t) => !held.has(t)).length;
}

/** Deterministic pseudo-random floats in [-2, 2] for keys/values (no RNG state shared with a policy). */
export function ramp(n: number, seed = 1): number[] {
  return Array.from({ length: n }, (_, i) => Math.sin(seed * 12.9898 + i * 78.233) * 2);
}

/** A layer of `heads x length` tokens with head dim `dim`, positions 0..length-1, optional scores. */
export function makeHostLayer(heads: number, length: number, dim: number, seed = 1, scores?: ArrayLike<number>): HostLayer {
  return hostLayer({ heads, length, headDim: dim, keys: ramp(heads * length * dim, seed), values: ramp(heads * length * dim, seed + 7), scores });
}

/** Upload a host layer. */
export function upload<T>(k: KVKernels<T>, layer: HostLayer): LayerCache<T> {
  return layerFromHost(k, layer);
}

/** Positions of a layer, one array per head. */
export async function positionsOf<T>(k: KVKernels<T>, layer: LayerCache<T>): Promise<number[][]> {
  return rows(await k.toHost(layer.positions));
}

/** Row-major float32 `[heads, n]` tensor from one array per head (an attention observation, scores). */
export function attention<T>(k: KVKernels<T>, perHead: readonly (readonly number[])[]): T {
  const n = perHead[0]?.length ?? 0;
  return k.fromHost(hostTensor('float32', [perHead.length, n], perHead.flat()));
}

/** One call of a {@link RecordingLogger}. */
export interface LoggedLine {
  /** `debug`, `info` or `warn`. */
  readonly level: string;
  /** The message. */
  readonly message: string;
  /** The structured fields, if any. */
  readonly fields?: Record<string, unknown>;
}

/** A logger that keeps every call. */
export interface RecordingLogger extends Logger {
  /** Every call, in order. */
  readonly lines: LoggedLine[];
}

/** A logger that records every call (to assert what a policy or backend reported). */
export function recordingLogger(): RecordingLogger {
  const lines: LoggedLine[] = [];
  const at = (level: string) => (message: string, fields?: Record<string, unknown>) => void lines.push({ level, message, ...(fields ? { fields } : {}) });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn') };
}
