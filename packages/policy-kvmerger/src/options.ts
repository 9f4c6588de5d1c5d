import { shareSchema, validateOptions, type JsonSchema } from '@kvfold/core';

/** A fixed Gaussian bandwidth for every merging set (the paper's best ablation value is 5). */
export interface FixedSigma {
  /** Discriminator. */
  readonly mode: 'fixed';
  /** The bandwidth; default 5 (paper's sigma ablation). */
  readonly value?: number;
}

/**
 * Bandwidth from the members' spread: `sigma^2` = mean squared key distance of the non-pivot members
 * to the pivot. A third-party port's choice, not the paper. Costs a download of the keys to the host.
 */
export interface RmsSigma {
  /** Discriminator. */
  readonly mode: 'rms';
  /** Fallback when the spread is degenerate (all members equal to the pivot); default 5. */
  readonly value?: number;
}

/**
 * Fixed-point iteration of the paper's circular Eq. 4, `sigma = sum_i g_pi(sigma) / (sqrt(2) |S|)`,
 * started at `value`. Costs a download of the keys to the host.
 */
export interface Eq4Sigma {
  /** Discriminator. */
  readonly mode: 'eq4';
  /** Starting point (and fallback when degenerate); default 5. */
  readonly value?: number;
  /** Number of fixed-point iterations; default 20. */
  readonly iterations?: number;
}

/** How the Gaussian bandwidth of each merging set is chosen; a bare number is a fixed bandwidth. */
export type SigmaOption = number | FixedSigma | RmsSigma | Eq4Sigma;

/** A {@link SigmaOption} with every field resolved. */
export type ResolvedSigma = Required<FixedSigma> | Required<RmsSigma> | Required<Eq4Sigma>;

/** Options of the `kvmerger` policy (Wang et al. 2024, arXiv 2407.08454). */
export interface KVMergerOptions {
  /**
   * Most recent slots kept verbatim: a share of the budget in (0, 1) or an absolute count (integer >= 1);
   * 0 keeps none. Default 0.1. Source: paper (a recent window exists; its size, reported as "0.17%" /
   * "0.08%", is ambiguous, so the default is inferred).
   */
  readonly recent?: number;
  /**
   * Top accumulated-attention slots (outside the recent window) kept verbatim: share of the budget in
   * (0, 1) or absolute count (integer >= 1); 0 keeps none. Default 0.1. Source: paper (top-k exclusion;
   * the reported "0.12%" / "0.02%" split is ambiguous, so the default is inferred).
   */
  readonly heavy?: number;
  /**
   * `exact` (default, inferred): merge exactly enough links per head to reach the budget, equivalent to
   * searching eps per layer and head. `paper`: fixed `eps`, the size that results may exceed the budget.
   */
  readonly mode?: 'exact' | 'paper';
  /** Cosine threshold of `paper` mode: adjacent keys merge when their cosine is above it. Default 0.75 (paper). */
  readonly eps?: number;
  /** Links whose cosine is below this are never merged, in any mode. Default -1 = no floor (inferred). */
  readonly minSimilarity?: number;
  /**
   * `per-head` (default, inferred): each kv head finds its own merging sets. `shared`: one layout for all
   * heads from the head-mean cosine and head-mean scores (what a third-party port attributes to the
   * authors' code, unverified); pivots and weights stay per head.
   */
  readonly sets?: 'per-head' | 'shared';
  /** Gaussian bandwidth; default `{ mode: 'fixed', value: 5 }` (paper's ablation). See {@link SigmaOption}. */
  readonly sigma?: SigmaOption;
  /**
   * `count` (default, paper): merged value = |S| times the weighted mean (counts-aware). `none`: the
   * weighted mean alone (inferred switch).
   */
  readonly valueScale?: 'count' | 'none';
  /**
   * Layer indices never merged (negative counts from the end; `[0, 1, -1]` is the paper-notes hint).
   * Such a layer is evicted H2O-style to the budget instead. Indices outside the model are ignored.
   * Default `[]` (inferred).
   */
  readonly skipLayers?: readonly number[];
  /**
   * 0 (default, paper): compress at prefill only. N > 0 (inferred extension): during decoding, once the
   * cache holds more than target + N slots, re-run the exact procedure on the whole cache back to target.
   */
  readonly decodeInterval?: number;
}

/** {@link KVMergerOptions} after validation, with every default filled in. */
export interface ResolvedKVMergerOptions {
  /** See {@link KVMergerOptions.recent}. */
  readonly recent: number;
  /** See {@link KVMergerOptions.heavy}. */
  readonly heavy: number;
  /** See {@link KVMergerOptions.mode}. */
  readonly mode: 'exact' | 'paper';
  /** See {@link KVMergerOptions.eps}. */
  readonly eps: number;
  /** See {@link KVMergerOptions.minSimilarity}. */
  readonly minSimilarity: number;
  /** See {@link KVMergerOptions.sets}. */
  readonly sets: 'per-head' | 'shared';
  /** See {@link KVMergerOptions.sigma}. */
  readonly sigma: ResolvedSigma;
  /** See {@link KVMergerOptions.valueScale}. */
  readonly valueScale: 'count' | 'none';
  /** See {@link KVMergerOptions.skipLayers}. */
  readonly skipLayers: readonly number[];
  /** See {@link KVMergerOptions.decodeInterval}. */
  readonly decodeInterval: number;
}

const MAX_INT = 2_147_483_647;

const bandwidth = (description: string): JsonSchema => ({ type: 'number', exclusiveMinimum: 0, maximum: 1e6, default: 5, description });

/** JSON Schema of {@link KVMergerOptions}. */
export const kvmergerSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    recent: shareSchema('Most recent slots kept verbatim (paper; size inferred)', 0.1),
    heavy: shareSchema('Top accumulated-attention slots kept verbatim (paper; size inferred)', 0.1),
    mode: {
      enum: ['exact', 'paper'],
      default: 'exact',
      description: 'exact: merge just enough links per head to hit the budget (eps searched per head; inferred). paper: fixed eps, length may exceed the budget.',
    },
    eps: { type: 'number', minimum: -1, maximum: 1, default: 0.75, description: 'Cosine threshold of paper mode (paper: 0.75).' },
    minSimilarity: { type: 'number', minimum: -1, maximum: 1, default: -1, description: 'Links with a lower adjacent key cosine are never merged; -1 = no floor (inferred).' },
    sets: {
      enum: ['per-head', 'shared'],
      default: 'per-head',
      description: 'per-head: each kv head finds its own sets. shared: one layout from head-mean cosine and scores (port claim, unverified).',
    },
    sigma: {
      description: 'Gaussian bandwidth: a number (fixed), {"mode":"fixed","value":5} (paper ablation), {"mode":"rms"} (port, not the paper) or {"mode":"eq4","iterations":20} (paper Eq. 4 fixed point).',
      default: { mode: 'fixed', value: 5 },
      oneOf: [
        { type: 'number', exclusiveMinimum: 0, maximum: 1e6 },
        {
          type: 'object',
          additionalProperties: false,
          required: ['mode'],
          properties: { mode: { const: 'fixed' }, value: bandwidth('Bandwidth of every set (paper ablation: 5).') },
        },
        {
          type: 'object',
          additionalProperties: false,
          required: ['mode'],
          properties: { mode: { const: 'rms' }, value: bandwidth('Fallback bandwidth for degenerate sets.') },
        },
        {
          type: 'object',
          additionalProperties: false,
          required: ['mode'],
          properties: {
            mode: { const: 'eq4' },
            value: bandwidth('Starting point of the iteration and fallback.'),
            iterations: { type: 'integer', minimum: 1, maximum: 1000, default: 20, description: 'Fixed-point iterations.' },
          },
        },
      ],
    },
    valueScale: {
      enum: ['count', 'none'],
      default: 'count',
      description: 'count: merged value = |S| x weighted mean (paper). none: weighted mean only.',
    },
    skipLayers: {
      type: 'array',
      items: { type: 'integer', minimum: -100_000, maximum: 100_000 },
      uniqueItems: true,
      maxItems: 100_000,
      default: [],
      description: 'Layers never merged (negative = from the end); they are evicted H2O-style to the budget instead.',
    },
    decodeInterval: {
      type: 'integer',
      minimum: 0,
      maximum: MAX_INT,
      default: 0,
      description: '0: prefill only (paper). N > 0: re-merge to the target whenever decoding leaves more than target + N slots (inferred).',
    },
  },
};

/**
 * Validate options against {@link kvmergerSchema} and fill in every default.
 * @throws ConfigError naming each offending option and its allowed values.
 */
export function resolveOptions(options: KVMergerOptions = {}): ResolvedKVMergerOptions {
  const o = validateOptions<KVMergerOptions>(kvmergerSchema, options, 'options of policy "kvmerger"');
  const s = o.sigma ?? 5;
  let sigma: ResolvedSigma;
  if (typeof s === 'number') sigma = { mode: 'fixed', value: s };
  else if (s.mode === 'eq4') sigma = { mode: 'eq4', value: s.value ?? 5, iterations: s.iterations ?? 20 };
  else sigma = { mode: s.mode, value: s.value ?? 5 };
  return {
    recent: o.recent ?? 0.1,
    heavy: o.heavy ?? 0.1,
    mode: o.mode ?? 'exact',
    eps: o.eps ?? 0.75,
    minSimilarity: o.minSimilarity ?? -1,
    sets: o.sets ?? 'per-head',
    sigma,
    valueScale: o.valueScale ?? 'count',
    skipLayers: [...(o.skipLayers ?? [])],
    decodeInterval: o.decodeInterval ?? 0,
  };
}
