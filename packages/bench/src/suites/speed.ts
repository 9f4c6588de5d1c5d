import { createContext, disposeLayer, layerFromHost, resolveBudget, type HostTensor, type KVCachePolicy, type KVKernels, type Observation } from '@kvfold/core';
import { fillerText } from '@kvfold/model-tiny';
import { syntheticLayer, type SyntheticCase } from '@kvfold/testkit';
import { PolicyRun, argmax, capture } from '../model.js';
import { openTransformers, startTransformersRun } from '../transformers.js';
import { backendLabel, type BackendRef, type BenchConfig, type Variant } from '../config.js';
import { copyFloor, measureCopyBandwidth, median, scalingVerdict, type ScalingVerdict } from '../metrics.js';
import { breathe, itemSeed, prefillCost, type PlotSpec, type Suite, type SuiteContext, type SummaryCell, type WorkUnit } from '../suite.js';
import { policyColor, bytes, ms, num, pct, table, tfjsVariants, tokensOf, variantsNeedQueries } from './common.js';

/** One compression-throughput measurement (one backend, one policy). */
export interface ThroughputItem {
  /** `throughput`. */
  readonly kind: 'throughput';
  /** Backend label. */
  readonly backend: string;
  /** What the backend runs on (its `describe()`), or absent when unavailable. */
  readonly runs?: string;
  /** Why the backend cannot run here, when it cannot. */
  readonly unavailable?: string;
  /** Policy label. */
  readonly policy: string;
  /** Cache shape. */
  readonly heads: number;
  /** Tokens. */
  readonly length: number;
  /** Head dimension. */
  readonly headDim: number;
  /** Slots kept. */
  readonly kept: number;
  /** Median prefill compression time, ms. */
  readonly medianMs: number;
  /** Every timed repetition, ms. */
  readonly samplesMs: number[];
  /** K/V bytes read at least once. */
  readonly readBytes: number;
  /** Kept K/V bytes written at least once. */
  readonly writeBytes: number;
  /** Copy bandwidth measured in the same item, bytes/s (read + written). */
  readonly bandwidth: number;
  /** Time of the floor traffic at that bandwidth, ms. */
  readonly floorMs: number;
  /** floorMs / medianMs. */
  readonly fraction: number;
}

/** Decode speed and cache bytes of one variant. */
export interface DecodeItem {
  /** `decode`. */
  readonly kind: 'decode';
  /** Prompt tokens. */
  readonly prompt: number;
  /** Tokens decoded per round. */
  readonly generated: number;
  /** Median over rounds of decode tokens per second (forward + policy step + greedy pick). */
  readonly tokensPerSecond: number;
  /** Tokens per second of each round. */
  readonly roundsTokensPerSecond: number[];
  /** The prompt's forward pass, ms: on tfjs the full-cache pass every variant shares; on transformers.js the variant's own prefill, compression included (median of rounds). */
  readonly prefillMs: number;
  /** Median time of the policy's prefill compression of every layer, ms (NaN on transformers.js, where it is part of `prefillMs`). */
  readonly compressMs: number;
  /** Largest cache size seen, bytes. */
  readonly peakBytes: number;
  /** Cache size at the end, bytes. */
  readonly finalBytes: number;
  /** Slots per layer at the end (mean). */
  readonly finalSlots: number;
}

/** One point of the compression-time curve. */
export interface ScalingItem {
  /** `scaling`. */
  readonly kind: 'scaling';
  /** Backend label. */
  readonly backend: string;
  /** Policy label. */
  readonly policy: string;
  /** Tokens. */
  readonly length: number;
  /** Median prefill compression time, ms. */
  readonly medianMs: number;
  /** Every timed repetition, ms. */
  readonly samplesMs: number[];
}

/** Decode result of one variant. */
export interface DecodeRow {
  /** The variant. */
  readonly variant: Variant;
  /** Its measurement, when finished. */
  readonly item: DecodeItem | undefined;
}

/** Compression time against length for one policy. */
export interface ScalingCurve {
  /** Policy label. */
  readonly policy: string;
  /** Backend label. */
  readonly backend: string;
  /** Points by ascending length. */
  readonly points: ScalingItem[];
  /** Fit and growth check (undefined with fewer than two points). */
  readonly verdict: ScalingVerdict | undefined;
}

/** Metrics of the speed suite. */
export interface SpeedMetrics {
  /** Throughput rows (backend x policy). */
  readonly throughput: ThroughputItem[];
  /** Decode rows per variant. */
  readonly decode: DecodeRow[];
  /** Curves per policy, with the fit. */
  readonly scaling: ScalingCurve[];
}

/** `a / b` as `1.23x`, or `–` without a reference. */
function ratio(a: number, b: number | undefined): string {
  return b === undefined ? '–' : `${num(a / b, 2)}x`;
}

function firstVariant(config: BenchConfig, label: string): Variant {
  const v = config.variants.find((x) => x.label === label);
  if (!v) throw new RangeError(`no variant labelled ${label}`);
  return v;
}

/** Labels timed by default: every non-full policy of the sweep. */
function throughputLabels(config: BenchConfig): string[] {
  return config.bench.suites.speed?.throughput?.policies ?? [...new Set(config.variants.filter((v) => v.policy !== 'full').map((v) => v.label))];
}

/** Labels of the growth curve by default: the three seed policies. */
function scalingLabels(config: BenchConfig): string[] {
  return config.bench.suites.speed?.scaling?.policies ?? [...new Set(config.variants.filter((v) => ['h2o', 'cam', 'kvmerger'].includes(v.policy)).map((v) => v.label))];
}

interface Prepared {
  readonly data: SyntheticCase;
  readonly attention: HostTensor;
  readonly lastAttention: HostTensor;
}

/** A synthetic cache and the attention its own queries observe (computed once, not timed). */
async function prepare(kernels: KVKernels<unknown>, heads: number, length: number, headDim: number, seed: number): Promise<Prepared> {
  const data = syntheticLayer({ heads, length, headDim, queries: 16, seed });
  const layer = layerFromHost(kernels, data.layer);
  const q = kernels.fromHost(data.queries);
  const qp = kernels.fromHost(data.queryPositions);
  const seen = kernels.observe(layer, q, qp);
  const [attention, lastAttention] = await Promise.all([kernels.toHost(seen.attention), kernels.toHost(seen.lastAttention)]);
  kernels.dispose(q, qp, seen.attention, seen.lastAttention);
  disposeLayer(kernels, layer);
  return { data, attention, lastAttention };
}

/**
 * Median time of `policy.prefill` on a fresh upload of the prepared cache (upload not timed). The
 * result's counts are read back inside the timed region so backends that run asynchronously finish.
 */
async function timePrefill(kernels: KVKernels<unknown>, policy: KVCachePolicy, p: Prepared, budget: number, reps: number, seed: number): Promise<{ samples: number[]; kept: number }> {
  const samples: number[] = [];
  let kept = 0;
  const length = p.data.layer.keys.shape[1]!;
  for (let r = 0; r <= reps; r++) {
    const layer = layerFromHost(kernels, p.data.layer);
    const obs: Observation<unknown> = {
      ...(policy.needs.includes('attention') ? { attention: kernels.fromHost(p.attention) } : {}),
      ...(policy.needs.includes('lastAttention') ? { lastAttention: kernels.fromHost(p.lastAttention) } : {}),
      ...(policy.needs.includes('queries') ? { queries: kernels.fromHost(p.data.queries) } : {}),
    };
    const ctx = createContext({ kernels, budget, promptLength: length, seed });
    const t0 = performance.now();
    const out = await policy.prefill(layer, obs, ctx);
    await kernels.toHost(out.counts);
    const t = performance.now() - t0;
    kept = kernels.shapeOf(out.keys)[1] ?? 0;
    disposeLayer(kernels, out, layer);
    disposeLayer(kernels, layer);
    kernels.dispose(obs.attention, obs.lastAttention, obs.queries);
    // The first call warms caches and JITs; it is not counted.
    if (r > 0) samples.push(t);
  }
  return { samples, kept };
}

function throughputUnits(ctx: SuiteContext): WorkUnit[] {
  const cfg = ctx.config.bench.suites.speed!.throughput;
  if (!cfg) return [];
  const labels = throughputLabels(ctx.config);
  const seed = ctx.config.document.seed;
  return cfg.backends.map((ref: BackendRef) => {
    const label = backendLabel(ref);
    const keys = labels.map((p) => `speed|throughput|${label}|H=${cfg.heads}|L=${cfg.length}|D=${cfg.headDim}|b=${cfg.budget}|${p}`);
    return {
      keys,
      cost: keys.length * ((cfg.reps + 2) * cfg.length * cfg.heads * cfg.headDim) / 2e7,
      async run(pending, emit) {
        const kernels = await ctx.backend(ref);
        const base = { kind: 'throughput' as const, backend: label, heads: cfg.heads, length: cfg.length, headDim: cfg.headDim };
        const budget = resolveBudget(cfg.budget, cfg.length);
        const kvBytes = 2 * cfg.heads * cfg.length * cfg.headDim * 4;
        if (!('fromHost' in kernels)) {
          labels.forEach((p, i) => {
            if (pending.has(keys[i]!)) emit({ key: keys[i]!, data: { ...base, policy: p, unavailable: kernels.reason, kept: budget, medianMs: Number.NaN, samplesMs: [], readBytes: kvBytes, writeBytes: 0, bandwidth: Number.NaN, floorMs: Number.NaN, fraction: Number.NaN } satisfies ThroughputItem });
          });
          return;
        }
        const prepared = await prepare(kernels, cfg.heads, cfg.length, cfg.headDim, itemSeed(seed, 'throughput'));
        for (let i = 0; i < labels.length; i++) {
          if (!pending.has(keys[i]!)) continue;
          await breathe();
          const policy = ctx.policy(firstVariant(ctx.config, labels[i]!));
          // Bandwidth is measured inside the item, next to the timing it is compared with.
          const bandwidth = measureCopyBandwidth(kvBytes);
          const { samples, kept } = await timePrefill(kernels, policy, prepared, budget, cfg.reps, seed);
          const medianMs = median(samples);
          const writeBytes = 2 * cfg.heads * kept * cfg.headDim * 4;
          const floor = copyFloor({ readBytes: kvBytes, writeBytes, bandwidth, ms: medianMs });
          emit({ key: keys[i]!, data: { ...base, runs: kernels.describe(), policy: labels[i]!, kept, medianMs, samplesMs: samples, readBytes: kvBytes, writeBytes, bandwidth, floorMs: floor.floorMs, fraction: floor.fraction } satisfies ThroughputItem });
        }
      },
    };
  });
}

function decodeUnits(ctx: SuiteContext): WorkUnit[] {
  const cfg = ctx.config.bench.suites.speed!.decode;
  if (!cfg) return [];
  const { variants, document: doc } = ctx.config;
  const keys = variants.map((v) => `speed|decode|P=${cfg.prompt}|N=${cfg.tokens}|R=${cfg.rounds}|${v.id}`);
  const queries = variantsNeedQueries(ctx, tfjsVariants(variants));
  return [
    {
      keys,
      cost: prefillCost(cfg.prompt, 1) + keys.length * cfg.rounds * (0.05 + cfg.tokens * 0.005),
      async run(pending, emit) {
        const bench = await ctx.model();
        const { model } = bench;
        const ids = tokensOf(model.tokenizer, cfg.prompt, (chars) => fillerText({ length: chars, seed: itemSeed(doc.seed, 'decode') })).slice(0, cfg.prompt);
        const opts = { seed: doc.seed, groupReduction: doc.groupReduction, proportional: ctx.config.bench.proportional };
        const t0 = performance.now();
        const cap = await capture(model, ids, { queries, groupReduction: doc.groupReduction });
        const prefillMs = performance.now() - t0;
        const decode = async (run: PolicyRun): Promise<number> => {
          let logits = cap.logits;
          const t = performance.now();
          for (let n = 0; n < cfg.tokens; n++) logits = await run.feed([argmax(logits)]);
          return (cfg.tokens * 1000) / (performance.now() - t);
        };
        // Warm-up (not reported): first calls compile wasm kernels and grow memory, which would otherwise
        // be charged to whichever variant runs first.
        const warm = await PolicyRun.start(model, cap, undefined, 1, opts);
        await decode(warm);
        warm.dispose();
        const todo = variants.map((v, i) => ({ v, key: keys[i]! })).filter((x) => pending.has(x.key));
        const seen = new Map<string, { tps: number[]; compress: number[]; prefill: number[] }>(todo.map((x) => [x.key, { tps: [], compress: [], prefill: [] }]));
        const proportional = ctx.config.bench.proportional;
        const tjs = todo.some((x) => x.v.runtime === 'transformers.js') ? await openTransformers(bench.info.folder, { groupReduction: doc.groupReduction, proportional }) : undefined;
        /** One round of one variant: prefill (+ compression), then `cfg.tokens` timed greedy steps; what the row reports. */
        const round = async (v: Variant | undefined): Promise<{ tps: number; compressMs: number; prefillMs: number; peakBytes: number; finalBytes: number; lengths: number[] }> => {
          if (v?.runtime === 'transformers.js' || (v === undefined && tjs)) {
            // transformers.js prefills per variant: its compression cannot start from the tfjs capture.
            const r = await startTransformersRun(tjs!, ids, v ? ctx.policy(v) : undefined, v?.budget ?? 1, { seed: doc.seed, proportional });
            try {
              let logits = r.logits;
              const t = performance.now();
              for (let n = 0; n < cfg.tokens; n++) logits = await r.session.feed([argmax(logits)]);
              const tps = (cfg.tokens * 1000) / (performance.now() - t);
              return { tps, compressMs: Number.NaN, prefillMs: r.prefillMs, peakBytes: r.session.peakBytes, finalBytes: r.session.bytes(), lengths: r.session.lengths() };
            } finally {
              r.session.dispose();
            }
          }
          const run = await PolicyRun.start(model, cap, v ? ctx.policy(v) : undefined, v?.budget ?? 1, { ...opts, proportional: v?.proportional ?? opts.proportional });
          try {
            const tps = await decode(run);
            return { tps, compressMs: run.compressMs, prefillMs, peakBytes: run.cache.peakBytes, finalBytes: run.cache.bytes(), lengths: run.cache.lengths() };
          } finally {
            run.dispose();
          }
        };
        // transformers.js warms up too (session allocations, first-run kernel choices).
        if (tjs) await round(undefined);
        // Rounds interleave the variants, so a burst of load on the shared machine hits all of them alike;
        // the median of the rounds is reported.
        for (let r = 0; r < cfg.rounds; r++) {
          for (const { v, key } of todo) {
            await breathe();
            const res = await round(v);
            const s = seen.get(key)!;
            s.compress.push(res.compressMs);
            s.tps.push(res.tps);
            s.prefill.push(res.prefillMs);
            if (r === cfg.rounds - 1) {
              emit({
                key,
                variant: v.id,
                data: {
                  kind: 'decode',
                  prompt: ids.length,
                  generated: cfg.tokens,
                  tokensPerSecond: median(s.tps),
                  roundsTokensPerSecond: s.tps,
                  prefillMs: median(s.prefill),
                  compressMs: median(s.compress),
                  peakBytes: res.peakBytes,
                  finalBytes: res.finalBytes,
                  finalSlots: res.lengths.reduce((a, b) => a + b, 0) / Math.max(1, res.lengths.length),
                } satisfies DecodeItem,
              });
            }
          }
        }
      },
    },
  ];
}

function scalingUnits(ctx: SuiteContext): WorkUnit[] {
  const cfg = ctx.config.bench.suites.speed!.scaling;
  if (!cfg) return [];
  const backend = backendLabel(cfg.backend);
  const seed = ctx.config.document.seed;
  return scalingLabels(ctx.config).map((label) => {
    const keys = cfg.lengths.map((L) => `speed|scaling|${backend}|H=${cfg.heads}|D=${cfg.headDim}|b=${cfg.budget}|${label}|L=${L}`);
    return {
      keys,
      // Per item: synthesis + observe + reps timed calls, each linear in L.
      cost: cfg.lengths.reduce((a, L) => a + ((cfg.reps + 3) * L * cfg.heads * cfg.headDim) / 2e7, 0),
      async run(pending, emit) {
        const kernels = await ctx.backend(cfg.backend);
        if (!('fromHost' in kernels)) throw new Error(`scaling backend ${kernels.name} cannot run here: ${kernels.reason}`);
        const policy = ctx.policy(firstVariant(ctx.config, label));
        for (let i = 0; i < cfg.lengths.length; i++) {
          if (!pending.has(keys[i]!)) continue;
          await breathe();
          const L = cfg.lengths[i]!;
          const prepared = await prepare(kernels, cfg.heads, L, cfg.headDim, itemSeed(seed, 'scaling', L));
          const { samples } = await timePrefill(kernels, policy, prepared, resolveBudget(cfg.budget, L), cfg.reps, seed);
          emit({ key: keys[i]!, data: { kind: 'scaling', backend, policy: label, length: L, medianMs: median(samples), samplesMs: samples } satisfies ScalingItem });
        }
      },
    };
  });
}

/** Mark of a summary row whose cache ended the decode measurement with more slots than its budget. */
export const OVER_BUDGET = '†';

/**
 * The speed and memory suite: compression throughput per backend against a memory-copy floor measured
 * in the same item; decode tokens/s and cache bytes of the model with and without each policy; and how
 * compression time grows with the cache length (curve and linear-fit check, reported, never asserted).
 */
export const speedSuite: Suite<SpeedMetrics> = {
  name: 'speed',
  plan(ctx) {
    return [...throughputUnits(ctx), ...decodeUnits(ctx), ...scalingUnits(ctx)];
  },

  aggregate(records, config) {
    const data = records.map((r) => r.data as ThroughputItem | DecodeItem | ScalingItem);
    const decodeByVariant = new Map(records.filter((r) => (r.data as DecodeItem).kind === 'decode').map((r) => [r.variant!, r.data as DecodeItem]));
    const scalingItems = data.filter((d): d is ScalingItem => d.kind === 'scaling');
    const cfg = config.bench.suites.speed!;
    const scaling = cfg.scaling
      ? scalingLabels(config).map((policy) => {
          const points = scalingItems.filter((s) => s.policy === policy).sort((a, b) => a.length - b.length);
          const ok = points.filter((p) => p.medianMs > 0);
          let verdict: ScalingVerdict | undefined;
          if (ok.length >= 2) verdict = scalingVerdict(ok.map((p) => p.length), ok.map((p) => p.medianMs));
          return { policy, backend: backendLabel(cfg.scaling!.backend), points, verdict };
        })
      : [];
    return {
      throughput: data.filter((d): d is ThroughputItem => d.kind === 'throughput'),
      decode: cfg.decode ? config.variants.map((variant) => ({ variant, item: decodeByVariant.get(variant.id) })) : [],
      scaling,
    };
  },

  report(m, config) {
    const cfg = config.bench.suites.speed!;
    const out = ['## Speed and memory', ''];
    if (cfg.throughput) {
      const t = cfg.throughput;
      out.push('### Compression throughput against the memory-copy floor', '');
      out.push(
        `One prefill compression of a synthetic layer (${t.heads} kv heads x ${t.length} tokens x ${t.headDim} dims, float32; testkit's drifting keys) to a budget of ${t.budget}, median of ${t.reps} after one warm-up; the attention it needs is computed before the timer starts. ` +
          'The floor is the time to read every K/V byte once and write every kept K/V byte once at the copy bandwidth measured inside the same item (fastest of 9 Float32Array.set copies of a K/V-sized buffer, so both work on the same cache level); "of floor" = floor time / measured time (1 would be copy speed). ' +
          'Policies are created with validated options and run unguarded (no finite-check pass), so the time is the compression alone.',
        '',
      );
      out.push(
        table(
          ['backend', 'policy', 'time', 'tokens/s', 'K/V GB/s', 'copy GB/s', 'floor', 'of floor'],
          m.throughput.map((r) =>
            r.unavailable
              ? [r.backend, r.policy, `unavailable: ${r.unavailable}`, '', '', '', '', '']
              : [r.backend, r.policy, ms(r.medianMs), num((r.length / r.medianMs) * 1000, 0), num(r.readBytes / r.medianMs / 1e6, 2), num(r.bandwidth / 1e9, 1), ms(r.floorMs), pct(r.fraction, 2)],
          ),
        ),
      );
      const runs = [...new Map(m.throughput.filter((r) => r.runs).map((r) => [r.backend, r.runs!])).entries()];
      if (runs.length > 0) out.push('', ...runs.map(([b, r]) => `- ${b}: ${r}`));
      out.push('', '![throughput as a fraction of the floor](plots/throughput-floor.svg)', '');
    }
    if (cfg.decode) {
      const fullOf = (v: Variant) => m.decode.find((d) => d.variant.policy === 'full' && d.variant.runtime === v.runtime)?.item;
      const full = m.decode.find((d) => d.variant.policy === 'full')?.item;
      out.push('### Decode speed and cache bytes', '');
      out.push(
        `After one full-cache prefill of a ${cfg.decode.prompt}-token filler prompt, each policy compresses that cache to its budget and the model decodes ${cfg.decode.tokens} tokens greedily (EOS ignored) through the runtime's cache manager and decoder, as generate() does (full = no compression). ` +
          `tokens/s is the median of ${cfg.decode.rounds} rounds that interleave the variants; it counts decode steps (forward + policy step + greedy pick). Cache bytes: keys, values, positions, counts and scores of every layer.`,
        '',
      );
      const prefill = m.decode.find((d) => d.item && d.variant.runtime === 'tfjs')?.item?.prefillMs;
      if (prefill !== undefined) out.push(`Prompt forward pass with the full cache (shared by every tfjs row): ${ms(prefill)}.`, '');
      const tjsRows = m.decode.filter((d) => d.variant.runtime === 'transformers.js');
      if (tjsRows.length > 0) {
        out.push(
          'Rows marked (transformers.js) run the same checkpoint exported with `@kvfold/onnx-export` through transformers.js (onnxruntime-node, CPU), the cache compressed by `@kvfold/transformers` with the policy on the reference backend; ' +
            `each prefills on its own, so its compression time is inside its prefill: ${tjsRows.map((d) => `${d.variant.label} ${d.variant.policy === 'full' ? '' : `@${d.variant.budget} `}${d.item ? ms(d.item.prefillMs) : '–'}`).join(', ')}. ` +
            '"vs full" compares each row with the full cache on its own runtime.',
          '',
        );
      }
      out.push(
        table(
          ['policy', 'budget', 'decode tok/s', ...(full ? ['vs full'] : []), 'compression', 'peak cache', 'final cache', ...(full ? ['final vs full'] : []), 'final slots'],
          m.decode.map(({ variant: v, item: d }) =>
            d
              ? [v.label, String(v.budget), num(d.tokensPerSecond, 1), ...(full ? [ratio(d.tokensPerSecond, fullOf(v)?.tokensPerSecond)] : []), Number.isNaN(d.compressMs) ? 'in prefill' : ms(d.compressMs), bytes(d.peakBytes), bytes(d.finalBytes), ...(full ? [fullOf(v) ? pct(d.finalBytes / fullOf(v)!.finalBytes) : '–'] : []), num(d.finalSlots, 0)]
              : [v.label, String(v.budget), '–', ...(full ? ['–'] : []), '–', '–', '–', ...(full ? ['–'] : []), '–'],
          ),
        ),
      );
      out.push('');
    }
    if (cfg.scaling) {
      const s = cfg.scaling;
      out.push('### Compression time against context length', '');
      out.push(
        `Prefill compression of one synthetic layer (${s.heads} kv heads x L tokens x ${s.headDim} dims) to a budget of ${s.budget} on the ${backendLabel(s.backend)} backend, median of ${s.reps}. ` +
          'The check fits time = a + b L (R²) and the growth exponent of time ~ L^k (log-log slope); "linear" means k <= 1.2. It is reported here, not asserted by a timed test.',
        '',
      );
      out.push(table(['policy', ...s.lengths.map((L) => `L=${L}`)], m.scaling.map((c) => [c.policy, ...s.lengths.map((L) => ms(c.points.find((p) => p.length === L)?.medianMs ?? Number.NaN))])));
      out.push('');
      out.push(
        table(
          ['policy', 'growth exponent k', 'R² of linear fit', 'ms per 1k tokens (slope)', `time ratio (length ratio)`, 'linear?'],
          m.scaling.map((c) =>
            c.verdict
              ? [c.policy, num(c.verdict.exponent, 2), num(c.verdict.fit.r2, 4), num(c.verdict.fit.slope * 1000, 2), `${num(c.verdict.timeRatio, 1)} (${num(c.verdict.lengthRatio, 0)})`, c.verdict.linear ? 'yes' : 'no']
              : [c.policy, '–', '–', '–', '–', 'not enough points'],
          ),
        ),
      );
      out.push('', '![compression time vs length](plots/compression-time-vs-length.svg)', '', '![throughput vs context length](plots/throughput-vs-length.svg)', '');
    }
    return out.join('\n');
  },

  plots(m, config) {
    const cfg = config.bench.suites.speed!;
    const plots: PlotSpec[] = [];
    if (cfg.throughput) {
      plots.push({
        file: 'throughput-floor.svg',
        title: 'Compression time as a fraction of the memory-copy floor, per backend and policy',
        spec: {
          data: { values: m.throughput.filter((r) => !r.unavailable).map((r) => ({ backend: r.backend, policy: r.policy, fraction: r.fraction })) },
          width: 320,
          height: 200,
          mark: 'bar',
          encoding: {
            x: { field: 'policy', type: 'nominal', title: 'policy' },
            xOffset: { field: 'backend', type: 'nominal' },
            y: { field: 'fraction', type: 'quantitative', title: 'floor time / measured time', axis: { format: '.1%' } },
            color: { field: 'backend', type: 'nominal' },
          },
        },
      });
    }
    if (cfg.scaling) {
      const values = m.scaling.flatMap((c) => c.points.filter((p) => p.medianMs > 0).map((p) => ({ policy: c.policy, length: p.length, ms: p.medianMs, tokensPerSecond: (p.length / p.medianMs) * 1000 })));
      const x = { field: 'length', type: 'quantitative', scale: { type: 'log', base: 2 }, title: 'cache length (tokens)' };
      plots.push({
        file: 'compression-time-vs-length.svg',
        title: 'Prefill compression time vs cache length (log-log; a straight line of slope 1 is linear growth)',
        spec: { data: { values }, width: 320, height: 220, mark: { type: 'line', point: true }, encoding: { x, y: { field: 'ms', type: 'quantitative', scale: { type: 'log' }, title: 'time (ms)' }, color: policyColor(config.variants) } },
      });
      plots.push({
        file: 'throughput-vs-length.svg',
        title: 'Compression throughput (tokens/s) vs cache length (flat = linear time)',
        spec: { data: { values }, width: 320, height: 220, mark: { type: 'line', point: true }, encoding: { x, y: { field: 'tokensPerSecond', type: 'quantitative', title: 'tokens / s', scale: { zero: true } }, color: policyColor(config.variants) } },
      });
    }
    return plots;
  },

  summary(m, config) {
    const rows = new Map<string, SummaryCell[]>();
    if (m.decode.length === 0) return { columns: [], rows };
    const marks = new Map<string, string>();
    for (const { variant, item } of m.decode) {
      rows.set(variant.id, [
        { value: item?.tokensPerSecond ?? Number.NaN, text: item ? num(item.tokensPerSecond, 1) : '–' },
        { value: item?.finalBytes ?? Number.NaN, text: item ? bytes(item.finalBytes) : '–' },
      ]);
      if (item && variant.policy !== 'full' && item.finalSlots > resolveBudget(variant.budget, item.prompt)) marks.set(variant.id, OVER_BUDGET);
    }
    const cfg = config.bench.suites.speed!.decode!;
    const legend = [
      `decode tok/s: median over ${cfg.rounds} rounds of generating ${cfg.tokens} tokens after a ${cfg.prompt}-token prompt (forward pass + policy step + greedy pick); cache bytes: the cache at the end of that generation`,
      ...(marks.size > 0
        ? [`${OVER_BUDGET} ended over budget: more slots at the end of the generation than the budget allows (a policy that compresses only once, after the prompt, such as KVMerger with its default decodeInterval 0, keeps the generated tokens)`]
        : []),
    ];
    return { columns: ['decode tok/s', 'cache bytes'], rows, legend, marks };
  },
};
