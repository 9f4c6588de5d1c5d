import { BackendUnavailableError, createContext, disposeLayer, layerFromHost, layerToHost, resolveBudget, type HostTensor, type Observation } from '@kvfold/core';
import { passkeySample } from '@kvfold/model-tiny';
import { attentionOutput, relativeError } from '@kvfold/testkit';
import { backendLabel, type Variant } from '../config.js';
import { mean } from '../metrics.js';
import { capture } from '../model.js';
import { breathe, itemSeed, prefillCost, type PlotSpec, type Suite, type SummaryCell, type WorkUnit } from '../suite.js';
import { perVariant, policyColor, num, table, tfjsVariants, tokensOf, variantsNeedQueries, nText } from './common.js';

/** Result of one fidelity item. */
export interface FidelityItem {
  /** Context tokens that were compressed. */
  readonly context: number;
  /** Probe tokens whose queries attend over it. */
  readonly probes: number;
  /** Sample index. */
  readonly sample: number;
  /** Relative error `||O_c - O_f|| / ||O_f||` of each layer's attention output over the probe queries. */
  readonly errors: number[];
  /** Slots per layer after compression (mean over layers). */
  readonly keptSlots: number;
  /** Share of kept slots that stand for more than one token (merged), mean over layers. */
  readonly mergedShare: number;
}

/** Mean error at one context length. */
export interface ContextError {
  /** Context tokens. */
  readonly context: number;
  /** Mean relative error over layers and samples. */
  readonly error: number;
}

/** Fidelity of one variant. */
export interface FidelityVariantMetrics {
  /** The variant. */
  readonly variant: Variant;
  /** Mean relative error per layer. */
  readonly perLayer: number[];
  /** Mean over layers. */
  readonly mean: number;
  /** Mean relative error per context length (over layers and samples). */
  readonly perContext: ContextError[];
  /** Mean share of merged slots. */
  readonly mergedShare: number;
  /** Mean slots per layer the probes attend over: the compressed cache, which they do not extend (so these are also the final slots). */
  readonly keptSlots: number;
  /** Items. */
  readonly n: number;
}

/** Metrics of the fidelity suite. */
export interface FidelityMetrics {
  /** Backend the policies ran on. */
  readonly backend: string;
  /** Per variant. */
  readonly variants: FidelityVariantMetrics[];
}

/**
 * The fidelity suite: each prompt (a passkey prompt of context + probe tokens) is run once with the full
 * cache; every policy then compresses each layer's real cache with the real observed attention, and the
 * probe tokens' real queries attend over the compressed and the full cache. Layers are measured in
 * isolation (all see the full model's queries), which is what the metric means: how far one layer's
 * attention output moves when only its cache is compressed.
 */
export const fidelitySuite: Suite<FidelityMetrics> = {
  name: 'fidelity',
  plan(ctx) {
    const cfg = ctx.config.bench.suites.fidelity!;
    const { document: doc } = ctx.config;
    const variants = tfjsVariants(ctx.config.variants);
    const queries = variantsNeedQueries(ctx, variants);
    const units: WorkUnit[] = [];
    for (const context of cfg.contexts) {
      for (let s = 0; s < cfg.samples; s++) {
        const keys = variants.map((v) => `fidelity|C=${context}|P=${cfg.probes}|s=${s}|${v.id}`);
        units.push({
          keys,
          cost: prefillCost(context + cfg.probes, keys.length),
          async run(pending, emit) {
            const { model } = await ctx.model();
            const kernels = await ctx.backend(cfg.backend);
            if (!('fromHost' in kernels)) throw new BackendUnavailableError(`fidelity backend ${kernels.name} cannot run here: ${kernels.reason}`, { backend: kernels.name });
            const seed = itemSeed(doc.seed, 'fidelity', context, s);
            const ids = tokensOf(model.tokenizer, context + cfg.probes, (chars) => passkeySample({ length: chars, depth: 0.5, seed }).prompt);
            const cap = await capture(model, ids.slice(0, context), { queries, probe: ids.slice(context, context + cfg.probes), groupReduction: doc.groupReduction });
            const layerCount = cap.layers.length;
            const probeQueries = cap.probe!.map((p) => p.queries!);
            const reference = cap.layers.map((l, li) => attentionOutput(l, probeQueries[li]!));
            for (let i = 0; i < variants.length; i++) {
              const v = variants[i]!;
              if (!pending.has(keys[i]!)) continue;
              await breathe();
              const policy = ctx.kv.policy(v.policy, v.options);
              const budget = resolveBudget(v.budget, context);
              const errors: number[] = [];
              let kept = 0;
              let merged = 0;
              for (let li = 0; li < layerCount; li++) {
                const layer = layerFromHost(kernels, cap.layers[li]!);
                const seen = cap.observed[li]!;
                const up = (t: HostTensor | undefined) => (t ? kernels.fromHost(t) : undefined);
                const obs: Observation<unknown> = {
                  ...(policy.needs.includes('attention') ? { attention: up(seen.attention) } : {}),
                  ...(policy.needs.includes('lastAttention') ? { lastAttention: up(seen.lastAttention) } : {}),
                  ...(policy.needs.includes('queries') ? { queries: up(seen.queries) } : {}),
                };
                try {
                  const out = await policy.prefill(layer, obs, createContext({ kernels, budget, promptLength: context, layerIndex: li, layerCount, seed: doc.seed }));
                  const host = await layerToHost(kernels, out);
                  disposeLayer(kernels, out, layer);
                  errors.push(relativeError(reference[li]!, attentionOutput(host, probeQueries[li]!, v.proportional)));
                  const counts = host.counts.data;
                  kept += host.keys.shape[1]!;
                  merged += counts.filter((c) => c > 1).length / counts.length;
                } finally {
                  disposeLayer(kernels, layer);
                  kernels.dispose(obs.attention, obs.lastAttention, obs.queries);
                }
              }
              emit({ key: keys[i]!, variant: v.id, data: { context, probes: cfg.probes, sample: s, errors, keptSlots: kept / layerCount, mergedShare: merged / layerCount } satisfies FidelityItem });
            }
          },
        });
      }
    }
    return units;
  },

  aggregate(records, config) {
    const cfg = config.bench.suites.fidelity!;
    return {
      backend: backendLabel(cfg.backend),
      variants: perVariant<FidelityItem, FidelityVariantMetrics>(records, tfjsVariants(config.variants), (variant, items) => {
        const layers = Math.max(0, ...items.map((i) => i.errors.length));
        const perLayer = Array.from({ length: layers }, (_, li) => mean(items.map((i) => i.errors[li]!).filter((x) => x !== undefined)));
        const contexts = [...new Set(items.map((i) => i.context))].sort((a, b) => a - b);
        return {
          variant,
          perLayer,
          mean: mean(items.flatMap((i) => i.errors)),
          perContext: contexts.map((c) => ({ context: c, error: mean(items.filter((i) => i.context === c).flatMap((i) => i.errors)) })),
          mergedShare: mean(items.map((i) => i.mergedShare)),
          keptSlots: mean(items.map((i) => i.keptSlots)),
          n: items.length,
        };
      }),
    };
  },

  report(m, config) {
    const cfg = config.bench.suites.fidelity!;
    const layers = Math.max(0, ...m.variants.map((v) => v.perLayer.length));
    const out = ['## Fidelity: attention output error per layer', ''];
    out.push(
      `Relative error ||O_compressed - O_full|| / ||O_full|| of each layer's attention output for the real queries of ${cfg.probes} probe tokens that follow a context of ${cfg.contexts.join(', ')} tokens ` +
        `(passkey prompts, ${cfg.samples} sample(s) each), compressed on the ${m.backend} backend with the attention the model observed over the context. Lower is better; 0 = identical. ` +
        'The probes attend over the compressed cache without being appended to it, so `final slots` (mean slots per layer, over both context lengths) are the slots after compression and every row of a budget has the same count.' +
        (config.variants.some((v) => v.proportional) ? ` Proportional attention (log(count) on merged slots) is on for ${[...new Set(config.variants.filter((v) => v.proportional).map((v) => v.label))].join(', ')}.` : ''),
      '',
    );
    out.push(
      table(
        ['policy', 'budget', ...Array.from({ length: layers }, (_, i) => `layer ${i}`), 'mean', ...(cfg.contexts.length > 1 ? cfg.contexts.map((c) => `C=${c}`) : []), 'final slots', 'merged slots', 'n'],
        m.variants.map((v) => [
          v.variant.label,
          String(v.variant.budget),
          ...Array.from({ length: layers }, (_, i) => num(v.perLayer[i] ?? Number.NaN)),
          num(v.mean),
          ...(cfg.contexts.length > 1 ? cfg.contexts.map((c) => num(v.perContext.find((p) => p.context === c)?.error ?? Number.NaN)) : []),
          num(v.keptSlots, 1),
          `${((v.mergedShare || 0) * 100).toFixed(0)}%`,
          String(v.n),
        ]),
      ),
    );
    out.push('', '![fidelity per layer](plots/fidelity-per-layer.svg)', '');
    return out.join('\n');
  },

  plots(m, config): PlotSpec[] {
    const values = m.variants.filter((v) => v.variant.policy !== 'full').flatMap((v) => v.perLayer.map((e, layer) => ({ policy: v.variant.label, budget: String(v.variant.budget), layer, error: e })));
    return [
      {
        file: 'fidelity-per-layer.svg',
        title: 'Relative error of attention outputs per layer (compressed vs full cache), per budget',
        spec: {
          data: { values },
          facet: { column: { field: 'budget', type: 'ordinal', sort: 'descending', title: 'budget' } },
          spec: {
            width: 200,
            height: 180,
            mark: { type: 'line', point: true },
            encoding: {
              x: { field: 'layer', type: 'ordinal', title: 'layer' },
              y: { field: 'error', type: 'quantitative', title: 'relative error' },
              color: policyColor(config.variants),
            },
          },
        },
      },
    ];
  },

  summary(m, config) {
    const rows = new Map<string, SummaryCell[]>();
    for (const v of m.variants) rows.set(v.variant.id, [{ value: v.mean, text: num(v.mean) }]);
    const cfg = config.bench.suites.fidelity!;
    const legend = [`attn error: relative error of each layer's attention output against the full cache, mean over layers and ${nText(m.variants.map((v) => v.n))} contexts per row (${cfg.probes} probe queries each); 0 = unchanged`];
    return { columns: ['attn error'], rows, legend };
  },
};
