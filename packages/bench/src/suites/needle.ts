import { PASSKEY_QUESTION, passkeySample, recallSample, wordNeedleSample } from '@kvfold/model-tiny';
import { needleTaskOf as taskOf, type NeedleConfig, type Variant } from '../config.js';
import { accuracy, answerMatches } from '../metrics.js';
import { accuracyInterval, comparePaired, formatInterval, type PairedComparison, type ProportionInterval } from '../stats.js';
import { PolicyRun, capture, greedyDecode } from '../model.js';
import { openTransformers, startTransformersRun } from '../transformers.js';
import { breathe, itemSeed, prefillCost, splitTokens, type PlotSpec, type Suite, type SuiteContext, type SummaryCell, type WorkUnit } from '../suite.js';
import { num, pct, perVariant, policyColor, sweepLabels, table, tfjsVariants, variantsNeedQueries, nText } from './common.js';

/** Result of one needle item (a line of predictions.jsonl). */
export interface NeedleItem {
  /**
   * `passkey` (grammar filler), `passkey-prose` (the same needle in held-out prose), `word-needle` (held-out
   * prose, key of three filler words) or `recall`.
   */
  readonly task: NeedleTask;
  /** Prompt length in characters (= tokens for the byte-level embedded model). */
  readonly length: number;
  /** Needle depth (passkey). */
  readonly depth?: number;
  /** Pairs in the prompt (recall). */
  readonly pairs?: number;
  /** Sample index in its cell. */
  readonly sample: number;
  /** Tokens compressed at prefill. */
  readonly contextTokens: number;
  /** Tokens fed after the compression (the question, when placed after it). */
  readonly questionTokens: number;
  /** Mean slots per layer after the prefill compression. */
  readonly keptSlots: number;
  /**
   * Mean slots per layer when the answer was complete (after the question and the answer went through
   * the policy's decode steps): what the item really held, the figure equal-budget rows compare.
   * Absent in items recorded before it was measured.
   */
  readonly finalSlots?: number;
  /** The answer. */
  readonly expected: string;
  /** What the model generated (greedy). */
  readonly predicted: string;
  /** Exact match. */
  readonly correct: boolean;
}

/** The needle suite's tasks: the classic passkey on grammar or prose filler, the word-key needle on prose, and associative recall. */
export type NeedleTask = 'passkey' | 'passkey-prose' | 'word-needle' | 'recall';

/** Passkey-style tasks, in report order. */
const PASSKEY_TASKS = ['passkey', 'passkey-prose', 'word-needle'] as const;


/** Accuracy of one passkey task for one variant. */
export interface NeedleTaskMetrics {
  /** The task. */
  readonly task: Exclude<NeedleTask, 'recall'>;
  /** Exact-match accuracy with its 95% Wilson interval and n. */
  readonly accuracy: ProportionInterval;
  /** Mean prompt tokens compressed at prefill. */
  readonly contextTokens: number;
  /** Mean slots per layer after the prefill compression. */
  readonly keptSlots: number;
  /** Mean slots per layer at the end of the answer (NaN when no item recorded it). */
  readonly finalSlots: number;
}

/** A paired comparison of two variants at one budget on one task (the same items). */
export interface NeedleComparison {
  /** Label of A. */
  readonly a: string;
  /** Label of B. */
  readonly b: string;
  /** Budget of both. */
  readonly budget: number;
  /** Task. */
  readonly task: NeedleTask;
  /** Accuracies, exact McNemar p-value, bootstrap interval of the difference and verdict. */
  readonly result: PairedComparison;
}

/** Accuracy of one heatmap cell. */
export interface NeedleCell {
  /** Prompt length. */
  readonly length: number;
  /** Depth (passkey) or pairs (recall). */
  readonly column: number;
  /** Exact-match accuracy. */
  readonly accuracy: number;
  /** Items in the cell. */
  readonly n: number;
}

/** Needle metrics of one variant. */
export interface NeedleVariantMetrics {
  /** The variant. */
  readonly variant: Variant;
  /** Accuracy of the first filler's task (`passkey` with the default fillers) over every cell. */
  readonly passkey: number;
  /** Items of that task. */
  readonly passkeyN: number;
  /** Heatmap cells (length x depth) of that task. */
  readonly cells: NeedleCell[];
  /** Per passkey task (filler), with Wilson intervals and the slots held. */
  readonly tasks: NeedleTaskMetrics[];
  /** Recall accuracy with its Wilson interval. */
  readonly recallInterval: ProportionInterval;
  /** Recall accuracy over every cell, NaN without recall. */
  readonly recall: number;
  /** Recall items. */
  readonly recallN: number;
  /** Chance level of recall (mean of 1/pairs over items). */
  readonly recallChance: number;
  /** Recall cells (length x pairs). */
  readonly recallCells: NeedleCell[];
}

/** Metrics of the needle suite. */
export interface NeedleMetrics {
  /** Per variant, in sweep order. */
  readonly variants: NeedleVariantMetrics[];
  /** The paired comparisons the config asks for (`needle.compare`), per budget and task. */
  readonly comparisons: NeedleComparison[];
}

const key = {
  passkey: (task: Exclude<NeedleTask, 'recall'>, length: number, depth: number, s: number, v: Variant) => `needle|${task}|L=${length}|d=${depth}|s=${s}|${v.id}`,
  recall: (length: number, pairs: number, s: number, v: Variant) => `needle|recall|L=${length}|p=${pairs}|s=${s}|${v.id}`,
};

interface Sample {
  readonly prompt: string;
  readonly answer: string;
  /** Character offset where the question starts. */
  readonly questionAt: number;
}

function unit(ctx: SuiteContext, cfg: NeedleConfig, keys: string[], make: () => Sample, base: Omit<NeedleItem, 'contextTokens' | 'questionTokens' | 'keptSlots' | 'finalSlots' | 'expected' | 'predicted' | 'correct'>, queries: boolean): WorkUnit {
  const { variants } = ctx.config;
  const doc = ctx.config.document;
  return {
    keys,
    cost: prefillCost(base.length, keys.length),
    async run(pending, emit) {
      const bench = await ctx.model();
      const { model } = bench;
      const sample = make();
      const split = cfg.question === 'after-compression' ? sample.questionAt : sample.prompt.length;
      const { context, rest } = splitTokens(model.tokenizer, sample.prompt, split);
      const want = sample.answer.length;
      // Each token is at least one character, so answer-length + 2 tokens always suffice to judge.
      const done = (t: readonly number[]) => model.tokenizer.decode(t).trimStart().length >= want;
      const eos = new Set([...model.tokenizer.eosTokenIds, ...model.config.eosTokenIds]);
      const finish = (i: number, keptSlots: number, finalSlots: number, tokens: readonly number[]) => {
        const predicted = model.tokenizer.decode(tokens);
        emit({
          key: keys[i]!,
          variant: variants[i]!.id,
          data: { ...base, contextTokens: context.length, questionTokens: rest.length, keptSlots, finalSlots, expected: sample.answer, predicted: predicted.trim(), correct: answerMatches(sample.answer, predicted) } satisfies NeedleItem,
        });
      };
      const mean = (lengths: readonly number[]) => lengths.reduce((a, b) => a + b, 0) / lengths.length;
      // The tfjs variants share one full-cache prefill; transformers.js variants each prefill on their own.
      const cap = variants.some((v, i) => v.runtime === 'tfjs' && pending.has(keys[i]!)) ? await capture(model, context, { queries, groupReduction: doc.groupReduction }) : undefined;
      for (let i = 0; i < variants.length; i++) {
        const v = variants[i]!;
        if (!pending.has(keys[i]!)) continue;
        await breathe();
        if (v.runtime === 'transformers.js') {
          const tjs = await openTransformers(bench.info.folder, { groupReduction: doc.groupReduction, proportional: v.proportional });
          const r = await startTransformersRun(tjs, context, ctx.policy(v), v.budget, { seed: doc.seed, proportional: v.proportional });
          try {
            const keptSlots = mean(r.session.lengths());
            const logits = rest.length > 0 ? await r.session.feed(rest) : r.logits;
            const tokens = await greedyDecode(logits, want + 2, eos, (t) => r.session.feed([t]), done);
            finish(i, keptSlots, mean(r.session.lengths()), tokens);
          } finally {
            r.session.dispose();
          }
          continue;
        }
        const run = await PolicyRun.start(model, cap!, ctx.policy(v), v.budget, { seed: doc.seed, groupReduction: doc.groupReduction, proportional: v.proportional });
        try {
          const keptSlots = mean(run.cache.lengths());
          const logits = rest.length > 0 ? await run.feed(rest) : cap!.logits;
          const tokens = await run.greedy(logits, want + 2, done);
          finish(i, keptSlots, mean(run.cache.lengths()), tokens);
        } finally {
          run.dispose();
        }
      }
    },
  };
}

/** The needle suite: passkey retrieval heatmap (length x depth) and multi-key associative recall. */
export const needleSuite: Suite<NeedleMetrics> = {
  name: 'needle',
  plan(ctx) {
    const cfg = ctx.config.bench.suites.needle!;
    const { variants } = ctx.config;
    const seed = ctx.config.document.seed;
    const queries = variantsNeedQueries(ctx, tfjsVariants(variants));
    const units: WorkUnit[] = [];
    // Sample-major order: a run stopped part-way holds whole rounds over every length, depth and filler,
    // so its partial accuracies are not skewed towards the first lengths.
    for (let s = 0; s < cfg.samples; s++) {
      for (const filler of cfg.fillers) {
        const task = taskOf(filler);
        for (const length of cfg.lengths) {
          for (const depth of cfg.depths) {
            const keys = variants.map((v) => key.passkey(task, length, depth, s, v));
            const make = (): Sample => {
              if (task === 'passkey-prose') {
                // The classic 5-digit passkey on held-out prose (real text: neighbouring sentences are not near-copies).
                const p = wordNeedleSample({ length, depth, seed: itemSeed(seed, task, length, depth, s), value: 'digits', filler: 'prose', split: 'eval' });
                return { prompt: p.prompt, answer: p.answer, questionAt: p.questionOffset };
              }
              if (task === 'word-needle') {
                // The evaluation cell of model-tiny's word-needle task: 3 words frequent in the held-out prose.
                const p = wordNeedleSample({ length, depth, seed: itemSeed(seed, task, length, depth, s), value: 'words', words: 3, filler: 'prose', split: 'eval' });
                return { prompt: p.prompt, answer: p.answer, questionAt: p.questionOffset };
              }
              const p = passkeySample({ length, depth, seed: itemSeed(seed, 'passkey', length, depth, s), digits: cfg.digits });
              return { prompt: p.prompt, answer: p.answer, questionAt: p.prompt.length - PASSKEY_QUESTION.length };
            };
            units.push(unit(ctx, cfg, keys, make, { task, length, depth, sample: s }, queries));
          }
        }
      }
    }
    for (const length of cfg.recall?.lengths ?? []) {
      for (const pairs of cfg.recall!.pairs) {
        for (let s = 0; s < cfg.recall!.samples; s++) {
          const keys = variants.map((v) => key.recall(length, pairs, s, v));
          const make = (): Sample => {
            const r = recallSample({ length, pairs, seed: itemSeed(seed, 'recall', length, pairs, s) });
            return { prompt: r.prompt, answer: r.answer, questionAt: r.prompt.lastIndexOf(' Which value has key ') };
          };
          units.push(unit(ctx, cfg, keys, make, { task: 'recall', length, pairs, sample: s }, queries));
        }
      }
    }
    return units;
  },

  aggregate(records, config) {
    const byVariant = new Map<string, NeedleItem[]>();
    const variants = perVariant<NeedleItem, NeedleVariantMetrics>(records, config.variants, (variant, items) => {
      byVariant.set(variant.id, items);
      // The heatmap shows the first filler's task (passkey by default; word-needle in a word-needle-only sweep).
      const first = taskOf(config.bench.suites.needle?.fillers[0] ?? 'grammar');
      const pk = items.filter((i) => i.task === first);
      const rc = items.filter((i) => i.task === 'recall');
      const tasks = PASSKEY_TASKS.flatMap((task) => {
        const its = items.filter((i) => i.task === task);
        if (its.length === 0) return [];
        const final = its.filter((i) => i.finalSlots !== undefined);
        const avg = (xs: readonly number[]) => (xs.length > 0 ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NaN);
        return [{ task, accuracy: accuracyInterval(its.map((i) => i.correct)), contextTokens: avg(its.map((i) => i.contextTokens)), keptSlots: avg(its.map((i) => i.keptSlots)), finalSlots: avg(final.map((i) => i.finalSlots!)) }];
      });
      return {
        variant,
        passkey: accuracy(pk.map((i) => i.correct)),
        passkeyN: pk.length,
        cells: cells(pk, (i) => i.depth ?? 0),
        tasks,
        recall: accuracy(rc.map((i) => i.correct)),
        recallN: rc.length,
        recallInterval: accuracyInterval(rc.map((i) => i.correct)),
        recallChance: rc.length > 0 ? rc.reduce((a, i) => a + 1 / (i.pairs ?? 1), 0) / rc.length : Number.NaN,
        recallCells: cells(rc, (i) => i.pairs ?? 0),
      };
    });
    return { variants, comparisons: compareVariants(config.bench.suites.needle?.compare ?? [], config.variants, byVariant) };
  },

  report(m, config) {
    const cfg = config.bench.suites.needle!;
    const out: string[] = ['## Needle: passkey retrieval and associative recall', ''];
    out.push(
      `Exact match of the greedy answer. Passkey: ${cfg.lengths.length} lengths x ${cfg.depths.length} depths x ${cfg.samples} samples per policy, budget and filler (${cfg.fillers.join(', ')}); ` +
        `question ${cfg.question === 'after-compression' ? 'fed after the context was compressed (query-agnostic: no policy sees the question before it compresses)' : 'inside the compressed prompt (query-aware)'}. ` +
        'Budgets are ratios of the compressed tokens. Lengths are prompt characters (= tokens for the byte-level embedded model). ' +
        "Tokens that arrive after the compression (question, answer) go through each policy's decode step. Column `decode` says what it does with them: " +
        '`held` = evicted (or, for KVMerger, re-merged) back to the budget, so the item ends at the budget; `prefill only` = kept, so the item ends over the budget by the tokens fed after the compression. ' +
        'Compare rows at equal final slots: `final slots` is the mean number of slots per layer when the answer was complete (prefill-only rows all end at the same count). ' +
        'Each accuracy is `accuracy [95% Wilson interval] n`.',
      '',
    );
    if (config.variants.some((v) => v.runtime === 'transformers.js')) {
      out.push(
        'Rows marked (transformers.js) run the same checkpoint exported with `@kvfold/onnx-export` through transformers.js (onnxruntime-node, CPU); `@kvfold/transformers` compresses its cache with the same policy, budget and seed (policy kernels on the reference backend). ' +
          'Their items are the same prompts as the tfjs rows, so the two runtimes should agree up to float differences that flip a greedy choice.',
        '',
      );
    }
    const taskNames = cfg.fillers.map(taskOf);
    out.push(
      table(
        ['policy', 'budget', 'decode', 'prompt tokens', 'slots after prefill', 'final slots', ...taskNames, ...(cfg.recall ? ['recall', 'chance'] : [])],
        m.variants.map((v) => {
          const t = v.tasks[0];
          return [
            v.variant.label,
            String(v.variant.budget),
            decodeSetting(v.variant),
            num(t?.contextTokens ?? Number.NaN, 0),
            num(t?.keptSlots ?? Number.NaN, 1),
            num(t?.finalSlots ?? Number.NaN, 1),
            ...taskNames.map((name) => {
              const x = v.tasks.find((y) => y.task === name);
              return x ? formatInterval(x.accuracy) : '–';
            }),
            ...(cfg.recall ? [formatInterval(v.recallInterval), pct(v.recallChance)] : []),
          ];
        }),
      ),
    );
    out.push('', 'Slot columns are means over the first passkey task\'s items (per layer; equal across layers for every built-in policy).');
    if (m.comparisons.length > 0) {
      out.push('', '### Paired comparisons (same items)', '');
      out.push(
        'Exact McNemar test on the items both rows answered (two-sided, 5% level) and a 95% paired-bootstrap interval of the difference; ' +
          '`only A` / `only B` count the items one row got right and the other wrong. A claim that one row beats another holds only where the verdict says so.',
        '',
      );
      out.push(
        table(
          ['A', 'B', 'budget', 'task', 'A', 'B', 'difference [95%]', 'only A', 'only B', 'p', 'verdict'],
          m.comparisons.map((c) => [
            c.a,
            c.b,
            String(c.budget),
            c.task,
            formatInterval(c.result.a),
            formatInterval(c.result.b),
            `${pct(c.result.difference)} [${pct(c.result.differenceInterval[0])}, ${pct(c.result.differenceInterval[1])}]`,
            String(c.result.onlyA),
            String(c.result.onlyB),
            c.result.pValue < 0.001 ? '< 0.001' : c.result.pValue.toFixed(3),
            c.result.verdict === 'A better' ? `${c.a} better` : c.result.verdict === 'B better' ? `${c.b} better` : 'not significant',
          ]),
        ),
      );
    }
    out.push('', `### ${taskOf(cfg.fillers[0] ?? 'grammar') === 'passkey' ? 'Passkey' : taskOf(cfg.fillers[0] ?? 'grammar')} accuracy by length (rows) and depth (columns)`, '');
    out.push(
      table(
        ['policy', 'budget', 'length', ...cfg.depths.map((d) => pct(d)), 'mean'],
        m.variants.flatMap((v) =>
          cfg.lengths.map((len) => {
            const row = cfg.depths.map((d) => v.cells.find((c) => c.length === len && c.column === d));
            const n = row.reduce((a, c) => a + (c?.n ?? 0), 0);
            const mean = n > 0 ? row.reduce((a, c) => a + (c ? c.accuracy * c.n : 0), 0) / n : Number.NaN;
            return [v.variant.label, String(v.variant.budget), String(len), ...row.map((c) => pct(c?.accuracy ?? Number.NaN)), pct(mean)];
          }),
        ),
      ),
    );
    if (cfg.recall) {
      out.push('', '### Associative recall by length and pairs', '');
      out.push(
        table(
          ['policy', 'budget', ...cfg.recall.lengths.flatMap((l) => cfg.recall!.pairs.map((p) => `${l} x ${p} pairs`))],
          m.variants.map((v) => [
            v.variant.label,
            String(v.variant.budget),
            ...cfg.recall!.lengths.flatMap((l) => cfg.recall!.pairs.map((p) => pct(v.recallCells.find((c) => c.length === l && c.column === p)?.accuracy ?? Number.NaN))),
          ]),
        ),
      );
      out.push('', `Chance is 1/pairs (a uniform guess among the listed values).`);
    }
    out.push('', '![accuracy vs budget](plots/accuracy-vs-budget.svg)', '', '![needle heatmaps](plots/needle-heatmaps.svg)', '');
    return out.join('\n');
  },

  plots(m, config) {
    const cfg = config.bench.suites.needle!;
    const points = m.variants.flatMap((v) => [
      ...(v.passkeyN > 0 ? [{ policy: v.variant.label, budget: v.variant.budget, task: taskOf(cfg.fillers[0] ?? 'grammar'), accuracy: v.passkey }] : []),
      ...(v.recallN > 0 ? [{ policy: v.variant.label, budget: v.variant.budget, task: 'recall', accuracy: v.recall }] : []),
    ]);
    // Facet rows carry their sweep position in the value ("01 full"), and columns are numeric: sorting
    // facets explicitly misplaces cells when some policy x budget combinations are absent (full has one).
    const labels = sweepLabels(config.variants);
    const row = (label: string) => `${String(labels.indexOf(label) + 1).padStart(2, '0')} ${label}`;
    const cells = m.variants.flatMap((v) => v.cells.map((c) => ({ row: row(v.variant.label), budget: v.variant.budget, length: c.length, depth: c.column, accuracy: c.accuracy })));
    const plots: PlotSpec[] = [
      {
        file: 'accuracy-vs-budget.svg',
        title: 'Exact-match accuracy vs budget per policy (full: budget 1)',
        spec: {
          data: { values: points },
          facet: { column: { field: 'task', type: 'nominal', title: null } },
          spec: { width: 260, height: 200, mark: { type: 'line', point: true }, encoding: enc() },
        },
      },
      {
        file: 'needle-heatmaps.svg',
        title: 'Passkey accuracy by context length and needle depth, per policy (rows) and budget (columns)',
        spec: {
          data: { values: cells },
          facet: {
            row: { field: 'row', type: 'nominal', title: 'policy', header: { labelExpr: 'slice(datum.value, 3)', labelAngle: 0, labelAlign: 'left' } },
            column: { field: 'budget', type: 'ordinal', title: 'budget (share kept)' },
          },
          spec: {
            width: Math.max(80, 26 * cfg.depths.length),
            height: Math.max(60, 18 * cfg.lengths.length),
            layer: [
              {
                mark: 'rect',
                encoding: {
                  x: { field: 'depth', type: 'ordinal', title: 'needle depth', axis: { format: '.0%', labelAngle: 0 } },
                  y: { field: 'length', type: 'ordinal', title: 'length' },
                  color: { field: 'accuracy', type: 'quantitative', scale: { domain: [0, 1], scheme: 'viridis' }, title: 'accuracy' },
                },
              },
              {
                mark: { type: 'text', fontSize: 8 },
                encoding: {
                  x: { field: 'depth', type: 'ordinal' },
                  y: { field: 'length', type: 'ordinal' },
                  text: { field: 'accuracy', type: 'quantitative', format: '.0%' },
                  color: { condition: { test: 'datum.accuracy < 0.5', value: 'white' }, value: 'black' },
                },
              },
            ],
          },
        },
      },
    ];
    return plots;

    function enc(): Record<string, unknown> {
      return {
        x: { field: 'budget', type: 'quantitative', scale: { domain: [0, 1] }, title: 'budget (share of the prompt kept)' },
        y: { field: 'accuracy', type: 'quantitative', scale: { domain: [0, 1] }, axis: { format: '.0%' } },
        color: policyColor(config.variants),
      };
    }
  },

  summary(m, config) {
    const cfg = config.bench.suites.needle!;
    const recall = cfg.recall != null;
    const taskNames = cfg.fillers.map(taskOf);
    const rows = new Map<string, SummaryCell[]>();
    for (const v of m.variants) {
      rows.set(v.variant.id, [
        ...taskNames.map((name) => {
          const t = v.tasks.find((x) => x.task === name);
          return t ? { value: t.accuracy.p, text: pct(t.accuracy.p) } : { value: Number.NaN, text: '–' };
        }),
        ...(recall ? [{ value: v.recall, text: pct(v.recall) }] : []),
      ]);
    }
    const where = cfg.question === 'after-compression' ? 'the question is read after the compression' : 'the question is part of the compressed prompt';
    const what: Record<string, string> = { passkey: 'passkey prompts', 'passkey-prose': 'the same on held-out prose filler', 'word-needle': 'held-out prose with a key of three filler words' };
    const n = (name: string) => nText(m.variants.map((v) => v.tasks.find((t) => t.task === name)?.accuracy.n ?? 0));
    const legend = [
      ...taskNames.map((name, i) =>
        i === 0
          ? `${name}: share of ${what[name]} answered exactly (greedy), ${n(name)} per row (${cfg.lengths.length} lengths x ${cfg.depths.length} depths x ${cfg.samples} samples); ${where}; report.md gives 95% intervals`
          : `${name}: ${what[name]}, ${n(name)} per row`,
      ),
      ...(recall ? [`recall: share of associative-recall prompts answered exactly, ${nText(m.variants.map((v) => v.recallN))} per row; chance ${pct(m.variants[0]?.recallChance ?? Number.NaN)}`] : []),
    ];
    return { columns: [...taskNames, ...(recall ? ['recall'] : [])], rows, legend };
  },
};

/** Accuracy per (length, column) cell. */
export function cells(items: readonly NeedleItem[], column: (i: NeedleItem) => number): NeedleCell[] {
  const map = new Map<string, { length: number; column: number; ok: boolean[] }>();
  for (const i of items) {
    const c = column(i);
    const k = `${i.length}|${c}`;
    const cell = map.get(k) ?? { length: i.length, column: c, ok: [] };
    cell.ok.push(i.correct);
    map.set(k, cell);
  }
  return [...map.values()].sort((a, b) => a.length - b.length || a.column - b.column).map((c) => ({ length: c.length, column: c.column, accuracy: accuracy(c.ok), n: c.ok.length }));
}

/**
 * What a variant does with the tokens fed after the prefill compression: `held` (evicted or re-merged
 * back to the budget), `prefill only` (kept), `every N` (evicted once per N tokens), `–` for full.
 */
export function decodeSetting(v: Variant): string {
  if (v.policy === 'full') return '–';
  const o = v.options;
  if (v.policy === 'kvmerger') {
    const n = typeof o['decodeInterval'] === 'number' ? o['decodeInterval'] : 0;
    return n === 0 ? 'prefill only' : n === 1 ? 'held (re-merge)' : `re-merge every ${n}`;
  }
  const d = o['decode'];
  if (d === 'keep') return 'prefill only';
  if (d === 'evict') return 'held';
  if (d && typeof d === 'object' && typeof (d as { every?: unknown }).every === 'number') return `evict every ${(d as { every: number }).every}`;
  return '?';
}

/** The paired comparisons of `pairs` (labels) at every budget both run and every task both answered. */
function compareVariants(pairs: readonly { readonly a: string; readonly b: string }[], variants: readonly Variant[], items: ReadonlyMap<string, NeedleItem[]>): NeedleComparison[] {
  const out: NeedleComparison[] = [];
  const itemKey = (i: NeedleItem) => `${i.task}|${i.length}|${i.depth ?? i.pairs}|${i.sample}`;
  for (const { a, b } of pairs) {
    for (const va of variants.filter((v) => v.label === a)) {
      const vb = variants.find((v) => v.label === b && v.budget === va.budget && v.runtime === va.runtime);
      if (!vb) continue;
      const bItems = new Map((items.get(vb.id) ?? []).map((i) => [itemKey(i), i]));
      for (const task of [...PASSKEY_TASKS, 'recall'] as const) {
        const paired = (items.get(va.id) ?? []).filter((i) => i.task === task && bItems.has(itemKey(i)));
        if (paired.length === 0) continue;
        const result = comparePaired(
          paired.map((i) => i.correct),
          paired.map((i) => bItems.get(itemKey(i))!.correct),
        );
        out.push({ a, b, budget: va.budget, task, result });
      }
    }
  }
  return out;
}
