import {
  MissingObservationError,
  SPECIFICATION_VERSION,
  cacheShape,
  definePolicy,
  hostTensor,
  resolveShare,
  rows,
  validateAgainst,
  type JsonSchema,
  type KVCachePolicy,
  type KVKernels,
  type LayerCache,
  type Observation,
  type ObservationNeed,
  type PolicyContext,
} from '@kvfold/core';

/** Options of the `h2o` policy. */
export interface H2OOptions {
  /**
   * Most recent slots always kept: a share of the budget when in `[0, 1)`, a slot count when an
   * integer `>= 1` (clamped to the budget). The rest of the budget goes to heavy hitters. Default 0.5:
   * the official H2O scripts use `heavy_ratio = recent_ratio` (0.1 / 0.1 of the prompt).
   */
  readonly recent: number;
  /**
   * Rank by the accumulated attention divided by the number of queries that could see each slot
   * (kvpress `ObservedAttentionPress`), instead of the raw sum of the official H2O code. The stored
   * score stays the raw sum either way. Default false.
   */
  readonly normalize: boolean;
}

/** JSON Schema of {@link H2OOptions}. */
export const h2oSchema: JsonSchema = {
  type: 'object',
  properties: {
    recent: {
      default: 0.5,
      description: 'Most recent slots always kept: a share of the budget in [0, 1) or an integer slot count >= 1 (clamped to the budget); the rest are heavy hitters. Official H2O splits heavy = recent.',
      oneOf: [
        { type: 'number', minimum: 0, exclusiveMaximum: 1 },
        { type: 'integer', minimum: 1 },
      ],
    },
    normalize: {
      type: 'boolean',
      default: false,
      description: 'Rank by accumulated attention / number of queries that could see the slot (kvpress ObservedAttentionPress); false ranks by the raw sum like the official H2O code.',
    },
  },
  additionalProperties: false,
};

/**
 * Heavy-Hitter Oracle (Zhang et al., NeurIPS 2023; real-drop `H2OKVCache_LayerWise` of
 * FMInference/H2O): each slot's score is the attention it has received, summed over every query so
 * far. Per kv head, the `recent` newest slots are kept plus the highest-scored older slots that fill the
 * budget; the rest are dropped for good, scores travel with the kept slots. The prompt is compressed
 * right after prefill; each decode step that leaves the cache over budget evicts back to it.
 */
export class H2OPolicy implements KVCachePolicy {
  /** Specification version implemented. */
  readonly specificationVersion = SPECIFICATION_VERSION;
  /** Registry name. */
  readonly name = 'h2o';
  /** H2O scores are the column sums of the attention each call observes. */
  readonly needs: readonly ObservationNeed[] = ['attention'];
  /** Validated options with defaults filled in. */
  readonly options: H2OOptions;

  /** @throws ConfigError when an option is unknown or out of bounds. */
  constructor(options: Partial<H2OOptions> = {}) {
    this.options = validateAgainst<H2OOptions>(h2oSchema, options, 'h2o options');
  }

  /** Accumulate the prompt's attention and compress the prompt to the budget. */
  async prefill<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    return this.update(layer, observed, ctx);
  }

  /** Accumulate the new queries' attention; evict back to the budget when over it. */
  async step<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    return this.update(layer, observed, ctx);
  }

  private async update<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    const k = ctx.kernels;
    if (observed.attention === undefined) throw new MissingObservationError(this.name, 'attention');
    const scores = k.accumulate(layer.scores, observed.attention);
    const scored: LayerCache<T> = { ...layer, scores };
    const { heads, length } = cacheShape(k, layer);
    if (length <= ctx.budget) return scored;
    try {
      const recent = resolveShare(this.options.recent, ctx.budget);
      const keep = await heavyPlusRecent(k, scored, ctx.budget, recent, this.options.normalize);
      const index = k.fromHost(hostTensor('int32', [heads, ctx.budget], keep));
      try {
        ctx.logger.debug('h2o: evicted slots', { layer: ctx.layerIndex, step: ctx.step, heavy: ctx.budget - recent, recent, evicted: length - ctx.budget });
        return k.gather(scored, index);
      } finally {
        k.dispose(index);
      }
    } finally {
      k.dispose(scores);
    }
  }
}

/**
 * Slots H2O keeps per head, row-major `[heads, budget]`, ascending: the top `budget - recent` scores
 * among slots `[0, length - recent)` (ties to the lower slot), then the `recent` last slots.
 */
async function heavyPlusRecent<T>(k: KVKernels<T>, layer: LayerCache<T>, budget: number, recent: number, normalize: boolean): Promise<Int32Array> {
  const { heads, length } = cacheShape(k, layer);
  const heavy = budget - recent;
  const older = length - recent;
  const keep = new Int32Array(heads * budget);
  if (heavy > 0) {
    const ranked = normalize ? await normalizedScores(k, layer) : layer.scores;
    let top: T | undefined;
    try {
      top = k.topK(ranked, heavy, 0, older);
      const chosen = (await k.toHost(top)).data;
      for (let h = 0; h < heads; h++) keep.set(chosen.subarray(h * heavy, (h + 1) * heavy), h * budget);
    } finally {
      k.dispose(top);
      if (ranked !== layer.scores) k.dispose(ranked);
    }
  }
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < recent; j++) keep[h * budget + heavy + j] = older + j;
  }
  return keep;
}

/**
 * Accumulated attention divided by how many queries could see each slot. Every token processed so far
 * was a query once, so a slot at position `p` was visible to the `newest - p + 1` queries at positions
 * `p..newest`, where `newest` is the position of the head's last slot (the token just appended).
 */
async function normalizedScores<T>(k: KVKernels<T>, layer: LayerCache<T>): Promise<T> {
  const [scores, positions] = await Promise.all([k.toHost(layer.scores), k.toHost(layer.positions)]);
  const s = rows(scores);
  const p = rows(positions);
  const out = new Float32Array(scores.data.length);
  let o = 0;
  for (let h = 0; h < s.length; h++) {
    const newest = p[h][p[h].length - 1];
    for (let j = 0; j < s[h].length; j++) out[o++] = s[h][j] / Math.max(1, newest - p[h][j] + 1);
  }
  return k.fromHost(hostTensor('float32', scores.shape, out));
}

/** Registry definition of {@link H2OPolicy}. */
export const h2oPolicy = definePolicy<H2OOptions>({
  name: 'h2o',
  description: 'Keep the recent window plus the tokens with the highest accumulated attention per kv head, evicting the rest at prefill and whenever a decode step exceeds the budget (H2O, Zhang et al., NeurIPS 2023).',
  schema: h2oSchema,
  create: (options) => new H2OPolicy(options),
});
