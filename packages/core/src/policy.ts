import type { KVKernels, LayerCache } from './kernels.js';
import type { Logger } from './logger.js';
import type { Rng } from './rng.js';

/** The policy specification version this core implements; policies built for another are refused by name. */
export const SPECIFICATION_VERSION = 'v2' as const;

/** What each policy specification version changed from the one before: the message a refused policy gets. */
export const SPECIFICATION_CHANGES: Readonly<Record<string, string>> = {
  v2:
    'KVKernels.observe returns { attention, lastAttention } (was { sums, last }), the names of Observation; ' +
    'every kernel call is validated by core before the backend runs it; kernels gained keyNorms, run and kernels(); ' +
    'PolicyDefinition.create receives PolicyServices as a second argument. Rebuild the policy against this @kvfold/core',
};

/** What a policy may ask the runtime to observe during attention. */
export type ObservationNeed = 'attention' | 'lastAttention' | 'queries';

/** A JSON Schema document (draft 2020-12 subset understood by ajv). */
export type JsonSchema = { readonly [key: string]: unknown };

/**
 * What attention observed for one layer during the call that precedes the policy (the prompt at
 * prefill, one or more new tokens at a decode step). Tensors are aligned with the layer's slots and
 * already reduced to kv-head granularity.
 */
export interface Observation<T> {
  /** Sum over this call's queries of the attention each slot received, float32 `[kvHeads, length]`. */
  readonly attention?: T;
  /** Attention from the most recent query alone, float32 `[kvHeads, length]`. */
  readonly lastAttention?: T;
  /** This call's query vectors (post-RoPE), float32 `[queryHeads, n, headDim]`. */
  readonly queries?: T;
}

/** Everything a policy receives besides the cache. */
export interface PolicyContext<T> {
  /** Index of the layer being compressed. */
  readonly layerIndex: number;
  /** Number of layers of the model. */
  readonly layerCount: number;
  /** 0 at prefill, then 1, 2, ... for each decode step. */
  readonly step: number;
  /** Number of prompt tokens (what ratio budgets refer to). */
  readonly promptLength: number;
  /** Resolved budget: the number of slots the layer may keep. */
  readonly budget: number;
  /** Tokens appended to the cache since the previous policy call (the prompt length at prefill). */
  readonly newTokens: number;
  /** The kernels of the backend that owns the cache. */
  readonly kernels: KVKernels<T>;
  /** Seeded RNG dedicated to this layer and step. */
  readonly rng: Rng;
  /** Where the policy reports what it did. */
  readonly logger: Logger;
  /**
   * The caller hands the layer over (it will not read the input again): a decode step may then edit it in
   * place on a backend that can (`KVKernels.editView`) instead of copying it, and return a cache whose slots
   * are not in position order and whose last row may be spare (see `evictInPlace`). Default false.
   */
  readonly inPlace?: boolean;
}

/**
 * A KV-cache compression policy. A runtime calls `prefill` once after the prompt, then `step` after
 * each decoding call. Both return the layer's new cache; they never mutate or dispose their input
 * (the caller releases it with `disposeLayer(kernels, old, next)`), and they dispose their own temporaries.
 */
export interface KVCachePolicy {
  /** Specification version; must equal {@link SPECIFICATION_VERSION}. */
  readonly specificationVersion: typeof SPECIFICATION_VERSION;
  /** Registry name, e.g. `kvmerger`. */
  readonly name: string;
  /** What the runtime must observe and pass in {@link Observation}. */
  readonly needs: readonly ObservationNeed[];
  /** Compress the cache right after the prompt was processed. */
  prefill<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>>;
  /** Update or compress the cache after new tokens were appended during decoding. */
  step<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>>;
}

/** What a policy factory may use besides its options: other registered policies, for wrappers. */
export interface PolicyServices {
  /**
   * Create a registered policy by name with its options validated against its schema (unguarded: the
   * wrapper that asks is guarded as a whole).
   * @throws UnknownPolicyError, ConfigError
   */
  policy(name: string, options?: Record<string, unknown>): KVCachePolicy;
}

/**
 * How a policy is registered: its name, option schema and a factory. `Options` is the validated
 * options object with schema defaults filled in.
 */
export interface PolicyDefinition<Options = Record<string, unknown>> {
  /** Specification version the policy implements; must equal {@link SPECIFICATION_VERSION}. */
  readonly specificationVersion: typeof SPECIFICATION_VERSION;
  /** Registry name (lowercase, `[a-z0-9-]`). */
  readonly name: string;
  /** One sentence: the rule and its source. */
  readonly description: string;
  /** JSON Schema of the options object, with defaults and bounds. */
  readonly schema: JsonSchema;
  /**
   * Build a policy from validated options. `services` (passed by `KVFold.policy`) lets a wrapper create
   * the policies it wraps; a wrapper called without it throws.
   */
  create(options: Options, services?: PolicyServices): KVCachePolicy;
}

/** Declare a policy definition with its options type checked; returns it unchanged. */
export function definePolicy<Options>(definition: Omit<PolicyDefinition<Options>, 'specificationVersion'> & { specificationVersion?: typeof SPECIFICATION_VERSION }): PolicyDefinition<Options> {
  return { specificationVersion: SPECIFICATION_VERSION, ...definition };
}
