import {
  createContext,
  createRng,
  hostLayer,
  hostTensor,
  layerFromHost,
  type HostLayer,
  type HostTensor,
  type KVKernels,
  type LayerCache,
  type PolicyContext,
} from '@kvfold/core';
import { trackedKernels } from '@kvfold/testkit';

/** Reference kernels that also track which tensors they created and which were disposed. */
export interface Tracked {
  readonly kernels: KVKernels<HostTensor>;
  /** Tensors created by a kernel call and not yet disposed. */
  readonly live: Set<HostTensor>;
}

/** The testkit's tracked reference kernels, with their live set alongside. */
export function tracked(): Tracked {
  const kernels = trackedKernels();
  return { kernels, live: kernels.live };
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

export { recordingLogger, snapshot } from '@kvfold/testkit';

/** A context for the given kernels. */
export function context(k: KVKernels<HostTensor>, budget: number, promptLength: number, extra: Partial<Parameters<typeof createContext<HostTensor>>[0]> = {}): PolicyContext<HostTensor> {
  return createContext({ kernels: k, budget, promptLength, ...extra });
}

export { hostLayer };
