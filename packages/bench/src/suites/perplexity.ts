import { fillerText } from '@kvfold/model-tiny';
import type { Variant } from '../config.js';
import { logProbability, mean, perplexity } from '../metrics.js';
import { PolicyRun, capture } from '../model.js';
import { breathe, itemSeed, prefillCost, type PlotSpec, type Suite, type SummaryCell, type WorkUnit } from '../suite.js';
import { decodeSetting } from './needle.js';
import { perVariant, policyColor, num, table, tfjsVariants, tokensOf, variantsNeedQueries, nText } from './common.js';

/** Result of one perplexity item. */
export interface PerplexityItem {
  /** Sample index. */
  readonly sample: number;
  /** Context tokens compressed at prefill. */
  readonly context: number;
  /** Tokens scored. */
  readonly tokens: number;
  /** Summed negative log-likelihood (nats) of the scored tokens. */
  readonly nll: number;
  /** Mean slots per layer after the prefill compression. */
  readonly keptSlots: number;
  /** Mean slots per layer after the last scored token went through the decode step (absent in runs made before it was recorded). */
  readonly finalSlots?: number;
}

/** Perplexity of one variant. */
export interface PerplexityVariantMetrics {
  /** The variant. */
  readonly variant: Variant;
  /** `exp(sum nll / sum tokens)` over every text. */
  readonly perplexity: number;
  /** Tokens scored. */
  readonly tokens: number;
  /** Texts. */
  readonly n: number;
  /** Mean slots per layer after the prefill compression. */
  readonly keptSlots: number;
  /** Mean slots per layer after the continuation (NaN when no item recorded it). */
  readonly finalSlots: number;
}

/** Metrics of the perplexity suite. */
export interface PerplexityMetrics {
  /** Per variant. */
  readonly variants: PerplexityVariantMetrics[];
}

/** Seeds of held-out texts live in their own stream ("perplexity" in the item seed), apart from the needle prompts. */
const STREAM = 'perplexity-heldout';

/**
 * The perplexity suite: a filler text's first `context` tokens are prefilled and compressed; the next
 * `continuation` tokens are scored teacher-forced over the compressed cache, `chunk` tokens per forward
 * pass with the policy's `step` after each pass (chunk 1 = token by token, as in decoding).
 */
export const perplexitySuite: Suite<PerplexityMetrics> = {
  name: 'perplexity',
  plan(ctx) {
    const cfg = ctx.config.bench.suites.perplexity!;
    const { document: doc } = ctx.config;
    const variants = tfjsVariants(ctx.config.variants);
    const queries = variantsNeedQueries(ctx, variants);
    const units: WorkUnit[] = [];
    for (let s = 0; s < cfg.samples; s++) {
      const keys = variants.map((v) => `perplexity|C=${cfg.context}|M=${cfg.continuation}|chunk=${cfg.chunk}|s=${s}|${v.id}`);
      units.push({
        keys,
        cost: prefillCost(cfg.context, keys.length) + keys.length * Math.ceil(cfg.continuation / cfg.chunk) * 0.05 * (1 + cfg.context / 1024),
        async run(pending, emit) {
          const { model } = await ctx.model();
          const seed = itemSeed(doc.seed, STREAM, s);
          const ids = tokensOf(model.tokenizer, cfg.context + cfg.continuation, (chars) => fillerText({ length: chars, seed }));
          const context = ids.slice(0, cfg.context);
          const cont = ids.slice(cfg.context, cfg.context + cfg.continuation);
          const cap = await capture(model, context, { queries, groupReduction: doc.groupReduction });
          const vocab = model.config.vocabSize;
          for (let i = 0; i < variants.length; i++) {
            const v = variants[i]!;
            if (!pending.has(keys[i]!)) continue;
            await breathe();
            const run = await PolicyRun.start(model, cap, ctx.policy(v), v.budget, { seed: doc.seed, groupReduction: doc.groupReduction, proportional: v.proportional });
            try {
              const slots = () => mean(run.cache.lengths());
              const keptSlots = slots();
              let nll = -logProbability(cap.logits, cont[0]!);
              for (let at = 0; at < cont.length - 1; ) {
                const end = Math.min(at + cfg.chunk, cont.length - 1);
                const logits = await run.feed(cont.slice(at, end), 'all');
                for (let j = 0; j < end - at; j++) nll -= logProbability(logits.subarray(j * vocab, (j + 1) * vocab), cont[at + j + 1]!);
                at = end;
              }
              emit({ key: keys[i]!, variant: v.id, data: { sample: s, context: context.length, tokens: cont.length, nll, keptSlots, finalSlots: slots() } satisfies PerplexityItem });
            } finally {
              run.dispose();
            }
          }
        },
      });
    }
    return units;
  },

  aggregate(records, config) {
    return {
      variants: perVariant<PerplexityItem, PerplexityVariantMetrics>(records, tfjsVariants(config.variants), (variant, items) => {
        const tokens = items.reduce((a, i) => a + i.tokens, 0);
        const final = items.flatMap((i) => (i.finalSlots === undefined ? [] : [i.finalSlots]));
        return { variant, perplexity: perplexity(items.reduce((a, i) => a + i.nll, 0), tokens), tokens, n: items.length, keptSlots: mean(items.map((i) => i.keptSlots)), finalSlots: mean(final) };
      }),
    };
  },

  report(m, config) {
    const cfg = config.bench.suites.perplexity!;
    const out = ['## Perplexity on held-out text', ''];
    out.push(
      `Perplexity of ${cfg.continuation} tokens that follow a ${cfg.context}-token context which was compressed to the budget (${cfg.samples} generated filler text(s) from seeds outside the other suites). ` +
        `The continuation is scored teacher-forced, ${cfg.chunk} token(s) per forward pass, with the policy's decode step after each pass. Lower is better. ` +
        '`decode` says what that step does with the scored tokens (`held`: evicted or re-merged back to the budget; `prefill only`: kept); `final slots` is the mean number of slots per layer after the last pass, so compare rows at equal final slots.',
      '',
    );
    const full = m.variants.find((v) => v.variant.policy === 'full');
    out.push(
      table(
        ['policy', 'budget', 'decode', 'slots after prefill', 'final slots', 'perplexity', ...(full ? ['vs full'] : []), 'tokens'],
        m.variants.map((v) => [
          v.variant.label,
          String(v.variant.budget),
          decodeSetting(v.variant),
          num(v.keptSlots, 1),
          num(v.finalSlots, 1),
          num(v.perplexity),
          ...(full ? [full.perplexity > 0 ? `${num(v.perplexity / full.perplexity, 3)}x` : '–'] : []),
          String(v.tokens),
        ]),
      ),
    );
    out.push('', '![perplexity vs budget](plots/perplexity-vs-budget.svg)', '');
    return out.join('\n');
  },

  plots(m, config): PlotSpec[] {
    return [
      {
        file: 'perplexity-vs-budget.svg',
        title: 'Held-out perplexity vs budget per policy (full: budget 1)',
        spec: {
          data: { values: m.variants.map((v) => ({ policy: v.variant.label, budget: v.variant.budget, perplexity: v.perplexity })) },
          width: 320,
          height: 220,
          mark: { type: 'line', point: true },
          encoding: {
            x: { field: 'budget', type: 'quantitative', scale: { domain: [0, 1] }, title: 'budget (share of the context kept)' },
            y: { field: 'perplexity', type: 'quantitative', scale: { zero: false } },
            color: policyColor(config.variants),
          },
        },
      },
    ];
  },

  summary(m, config) {
    const rows = new Map<string, SummaryCell[]>();
    for (const v of m.variants) rows.set(v.variant.id, [{ value: v.perplexity, text: num(v.perplexity, 3) }]);
    const cfg = config.bench.suites.perplexity!;
    const legend = [`perplexity: of ${cfg.continuation} held-out tokens read after a ${cfg.context}-token compressed context, ${nText(m.variants.map((v) => v.n))} texts per row; lower is better`];
    return { columns: ['perplexity'], rows, legend };
  },
};
