import type { KVKernels } from './kernels.js';
import { silentLogger, type Logger } from './logger.js';
import type { PolicyContext } from './policy.js';
import { createRng } from './rng.js';

/** Input of {@link createContext}. */
export interface ContextInit<T> {
  /** Kernels of the backend that owns the cache. */
  readonly kernels: KVKernels<T>;
  /** Resolved budget in slots. */
  readonly budget: number;
  /** Prompt length in tokens. */
  readonly promptLength: number;
  /** Layer index; default 0. */
  readonly layerIndex?: number;
  /** Layer count; default 1. */
  readonly layerCount?: number;
  /** Decode step; default 0 (prefill). */
  readonly step?: number;
  /** Tokens appended since the last policy call; default the prompt length at step 0, else 1. */
  readonly newTokens?: number;
  /** Seed; default 0. The RNG is forked by layer and step, so results never depend on call order. */
  readonly seed?: number;
  /** Logger; default silent. */
  readonly logger?: Logger;
  /** See {@link PolicyContext.inPlace}; default false. */
  readonly inPlace?: boolean;
}

/** Build the {@link PolicyContext} for one policy call. */
export function createContext<T>(init: ContextInit<T>): PolicyContext<T> {
  const layerIndex = init.layerIndex ?? 0;
  const step = init.step ?? 0;
  return {
    kernels: init.kernels,
    budget: init.budget,
    promptLength: init.promptLength,
    layerIndex,
    layerCount: init.layerCount ?? 1,
    step,
    newTokens: init.newTokens ?? (step === 0 ? init.promptLength : 1),
    rng: createRng(init.seed ?? 0).fork(layerIndex).fork(step),
    logger: init.logger ?? silentLogger,
    ...(init.inPlace ? { inPlace: true } : {}),
  };
}
