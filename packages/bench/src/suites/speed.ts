import { createContext, disposeLayer, hostTensor, layerFromHost, resolveBudget, type HostLayer, type HostTensor, type LayerCache, type KVCachePolicy, type KVKernels, type Observation } from '@kvfold/core';
import { fillerText } from '@kvfold/model-tiny';
import { syntheticLayer, type SyntheticCase } from '@kvfold/testkit';
import { PolicyRun, argmax, capture } from '../model.js';
import { openTransformers, startTransformersRun } from '../transformers.js';
import { backendLabel, type BackendRef, type BenchConfig, type Variant } from '../config.js';
import { copyFloor, measureCopyBandwidth, median, scalingVerdict, type ScalingVerdict } from '../metrics.js';
import { breathe, itemSeed, prefillCost, type ItemResult, type PlotSpec, type Suite, type SuiteContext, type SummaryCell, type WorkUnit } from '../suite.js';
import { policyColor, bytes, ms, num, pct, table, tfjsVariants, tokensOf, variantsNeedQueries } from './common.js';

/** What every per-backend speed measurement records: the backend, the policy and the synthetic cache's shape. */
export interface BackendItem {
  /** Backend label. */
  readonly backend: string;
  /** What the backend runs on (its `describe()`), or absent when unavailable. */
  readonly runs?: string;
  /** Why the backend cannot run here, when it cannot. */
  readonly unavailable?: string;
  /** Policy label. */
  readonly policy: string;
  /** kv heads. */
  readonly heads: number;
  /** Tokens (for a decode step: slots before the new token, the budget). */
  readonly length: number;
  /** Head dimension. */
  readonly headDim: number;
}

/** One compression-throughput measurement (one backend, one policy, one length). */
export interface ThroughputItem extends BackendItem {
  /** `throughput`. */
  readonly kind: 'throughput';
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
  /**
   * Peak bytes one compression held above its inputs, measured on an extra untimed call: the pool's
   * peak on reference and onnx, the engine's tensor bytes on tfjs (`peakOf` says which); absent when
   * the backend cannot tell.
   */
  readonly peakBytes?: number;
  /** What `peakBytes` counts. */
  readonly peakOf?: string;
}

/** One decode step of an evicting policy against that step's attention, on one backend. */
export interface StepItem extends BackendItem {
  /** `step`. */
  readonly kind: 'step';
  /** Query heads of the attention. */
  readonly queryHeads: number;
  /** The policy's eviction interval: 1 (`decode: "evict"`), or n of `decode: { every: n }`. */
  readonly every: number;
  /**
   * Median time of the policy's step per generated token, ms: with `every` 1, a step that accumulates the
   * new token's attention, selects and evicts one slot per head; with `every` n, the mean over n steps
   * (n - 1 that only accumulate, one that evicts n slots per head: {@link evictingStepMs}).
   */
  readonly stepMs: number;
  /** With `every` > 1: median time of the step that evicts `every` slots per head, ms. */
  readonly evictingStepMs?: number;
  /** Median time of the new token's attention over the cache (the observe kernel: logits and softmax), ms. */
  readonly attentionMs: number;
  /** stepMs / attentionMs. */
  readonly ratio: number;
  /** Every timed step, ms. */
  readonly stepSamplesMs: number[];
  /** Every timed attention, ms. */
  readonly attentionSamplesMs: number[];
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
  /** Throughput rows (backend x policy x length). */
  readonly throughput: ThroughputItem[];
  /** Decode-step rows (backend x policy). */
  readonly step: StepItem[];
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

/** Labels of the decode-step comparison by default: h2o and cam. */
function stepLabels(config: BenchConfig): string[] {
  return config.bench.suites.speed?.step?.policies ?? [...new Set(config.variants.filter((v) => ['h2o', 'cam'].includes(v.policy)).map((v) => v.label))];
}

/** Labels of the growth curve by default: the three seed policies. */
function scalingLabels(config: BenchConfig): string[] {
  return config.bench.suites.speed?.scaling?.policies ?? [...new Set(config.variants.filter((v) => ['h2o', 'cam', 'kvmerger'].includes(v.policy)).map((v) => v.label))];
}

/** A synthetic cache with the attention its own queries observe (host copies), as the suite times it. */
export interface Prepared {
  /** The synthetic layer and its queries. */
  readonly data: SyntheticCase;
  /** Attention the queries paid each slot, summed over queries ([heads, length]). */
  readonly attention: HostTensor;
  /** Attention of the last query alone ([heads, length]). */
  readonly lastAttention: HostTensor;
}

/**
 * Synthetic caches with their attention, shared by every backend's items of one run: the data and the
 * attention do not depend on the backend (the attention is computed by the first backend that needs it;
 * backends agree within 1e-5), and generating a 16k-token layer costs more than timing it.
 */
type PreparedCache = Map<string, Promise<Prepared>>;

/** A synthetic cache and the attention its own queries observe (computed once per run, not timed). */
function prepare(cache: PreparedCache, kernels: KVKernels<unknown>, heads: number, length: number, headDim: number, seed: number): Promise<Prepared> {
  const key = `${heads}|${length}|${headDim}|${seed}`;
  let p = cache.get(key);
  if (!p) {
    p = prepareCase(kernels, heads, length, headDim, seed);
    cache.set(key, p);
    // A failed preparation is not kept: the next backend tries again.
    p.catch(() => cache.delete(key));
  }
  return p;
}

/**
 * The suite's synthetic cache of one shape (16 queries), with the attention its queries observe on `kernels`
 * (upload, observe, download; not timed). Exported for `bench/interleaved.mjs`.
 */
export async function prepareCase(kernels: KVKernels<unknown>, heads: number, length: number, headDim: number, seed: number): Promise<Prepared> {
  const data = syntheticLayer({ heads, length, headDim, queries: 16, seed });
  return { data, ...(await observeOnce(kernels, data)) };
}

/** The attention a synthetic case's own queries observe, as host tensors (upload, observe, download). */
async function observeOnce(kernels: KVKernels<unknown>, data: SyntheticCase): Promise<{ attention: HostTensor; lastAttention: HostTensor }> {
  const layer = layerFromHost(kernels, data.layer);
  const q = kernels.fromHost(data.queries);
  const qp = kernels.fromHost(data.queryPositions);
  const seen = kernels.observe(layer, q, qp);
  try {
    const [attention, lastAttention] = await Promise.all([kernels.toHost(seen.attention), kernels.toHost(seen.lastAttention)]);
    return { attention, lastAttention };
  } finally {
    kernels.dispose(q, qp, seen.attention, seen.lastAttention);
    disposeLayer(kernels, layer);
  }
}

/** Bytes written before each timed call: twice this machine's 32 MiB L3, so every call starts from memory. */
const FLUSH_BYTES = 64 * 1024 * 1024;
let flushBuffer: Float32Array | undefined;

/**
 * Push the caches' contents out to memory: the upload just wrote the layer, which a small layer would
 * otherwise find in cache and a large one not, making time per token depend on size through the cache
 * hierarchy rather than the algorithm.
 */
function flushCaches(): void {
  flushBuffer ??= new Float32Array(FLUSH_BYTES / 4);
  flushBuffer.fill(Math.random());
}

/** The observations `policy` needs, uploaded from the prepared host copies. */
function uploadObservation(kernels: KVKernels<unknown>, policy: KVCachePolicy, p: Prepared): Observation<unknown> {
  return {
    ...(policy.needs.includes('attention') ? { attention: kernels.fromHost(p.attention) } : {}),
    ...(policy.needs.includes('lastAttention') ? { lastAttention: kernels.fromHost(p.lastAttention) } : {}),
    ...(policy.needs.includes('queries') ? { queries: kernels.fromHost(p.data.queries) } : {}),
  };
}

/**
 * Untimed prefill calls before the timed ones, as in the PyTorch yardstick (`bench/pytorch/compress.py`,
 * `--warmup 2`). With one, the first timed call still carried warm-up costs: in a speed-preset sitting (issue 12,
 * sixth session) it was the slowest of five in 19 of 48 items (about 10 by chance), up to 2.0x the median of the
 * other four (reference CaM at 4k: 25.5 ms against 12.0-13.6; onnx H2O at 4k: 13.8 and 15.5 against 6.3-7.5 ms).
 */
const PREFILL_WARMUPS = 2;

/**
 * One timed `policy.prefill` on a fresh upload of the prepared cache, as the suite times it: the upload is
 * not timed, the caches are flushed first, and the result's counts are read back inside the timed region so
 * backends that run asynchronously finish. Exported for `bench/interleaved.mjs`, which alternates backends
 * call by call with this very method.
 * @returns the call's time (ms) and the slots it kept per head.
 */
export async function prefillOnce(kernels: KVKernels<unknown>, policy: KVCachePolicy, p: Prepared, budget: number, seed: number): Promise<{ ms: number; kept: number }> {
  const layer = layerFromHost(kernels, p.data.layer);
  const obs = uploadObservation(kernels, policy, p);
  const ctx = createContext({ kernels, budget, promptLength: p.data.layer.keys.shape[1]!, seed });
  flushCaches();
  const t0 = performance.now();
  const out = await policy.prefill(layer, obs, ctx);
  await kernels.toHost(out.counts);
  const ms = performance.now() - t0;
  const kept = kernels.shapeOf(out.keys)[1] ?? 0;
  disposeLayer(kernels, out, layer);
  disposeLayer(kernels, layer);
  kernels.dispose(obs.attention, obs.lastAttention, obs.queries);
  return { ms, kept };
}

/** Median-ready samples of {@link prefillOnce}, after {@link PREFILL_WARMUPS} untimed calls. */
async function timePrefill(kernels: KVKernels<unknown>, policy: KVCachePolicy, p: Prepared, budget: number, reps: number, seed: number): Promise<{ samples: number[]; kept: number }> {
  const samples: number[] = [];
  let kept = 0;
  for (let r = 0; r < reps + PREFILL_WARMUPS; r++) {
    const one = await prefillOnce(kernels, policy, p, budget, seed);
    kept = one.kept;
    if (r >= PREFILL_WARMUPS) samples.push(one.ms);
  }
  return { samples, kept };
}

/** Peak bytes of one more (untimed) prefill above its uploaded inputs; see {@link measurePeak}. */
async function peakOfPrefill(kernels: KVKernels<unknown>, policy: KVCachePolicy, p: Prepared, budget: number, seed: number): Promise<{ bytes: number; of: string } | undefined> {
  const layer = layerFromHost(kernels, p.data.layer);
  const obs = uploadObservation(kernels, policy, p);
  const ctx = createContext({ kernels, budget, promptLength: p.data.layer.keys.shape[1]!, seed });
  let out: LayerCache<unknown> | undefined;
  try {
    return await measurePeak(kernels, async () => {
      out = await policy.prefill(layer, obs, ctx);
      await kernels.toHost(out.counts);
    });
  } finally {
    if (out) disposeLayer(kernels, out, layer);
    disposeLayer(kernels, layer);
    kernels.dispose(obs.attention, obs.lastAttention, obs.queries);
  }
}

/** A backend's buffer pool, when its kernels expose one (reference, onnx). */
interface PoolLike {
  resetPeak(): void;
  snapshot(): { liveBytes: number; peakLiveBytes: number };
}

/** A backend that can report the peak of its tensor memory over a call (tfjs). */
interface PeakLike {
  peakBytesOf(f: () => Promise<unknown>): Promise<number>;
}

/**
 * Peak bytes one call of `run` holds above what was live before it, and what that counts: on backends
 * with a buffer pool (reference, onnx), tensor buffers handed out by the pool (outputs, uploads, and on
 * the reference every kernel result of 64 KiB or more; host scratch arrays and ORT's internal arena are
 * not counted); on tfjs, the engine's tensor bytes (`tf.profile`). Undefined on other backends.
 */
async function measurePeak(kernels: KVKernels<unknown>, run: () => Promise<unknown>): Promise<{ bytes: number; of: string } | undefined> {
  const pool = (kernels as unknown as { pool?: PoolLike }).pool;
  if (pool && typeof pool.resetPeak === 'function') {
    const before = pool.snapshot().liveBytes;
    pool.resetPeak();
    await run();
    return { bytes: pool.snapshot().peakLiveBytes - before, of: 'pooled tensor buffers' };
  }
  const peak = (kernels as unknown as Partial<PeakLike>).peakBytesOf;
  if (typeof peak === 'function') return { bytes: await peak(run), of: 'tfjs tensor bytes' };
  return undefined;
}

/** The fields of an item that every policy's item of a unit shares, or that {@link emitPerPolicy} fills in. */
type UnitFields = 'kind' | 'backend' | 'heads' | 'length' | 'headDim' | 'queryHeads' | 'runs' | 'policy';
/** What a throughput item measures for one policy. */
type ThroughputMeasured = Omit<ThroughputItem, UnitFields>;
/** What a step item measures for one policy. */
type StepMeasured = Omit<StepItem, UnitFields>;

/**
 * Measure each pending policy of a unit in turn (yielding to the event loop between them) and emit its
 * item: the unit's `base` fields, the backend's runs and the policy's label, then what `measure` returns.
 */
async function emitPerPolicy(
  labels: readonly string[],
  keys: readonly string[],
  pending: ReadonlySet<string>,
  emit: (item: ItemResult) => void,
  kernels: KVKernels<unknown>,
  base: object,
  measure: (policyLabel: string) => Promise<object>,
): Promise<void> {
  for (let i = 0; i < labels.length; i++) {
    if (!pending.has(keys[i]!)) continue;
    await breathe();
    const measured = await measure(labels[i]!);
    emit({ key: keys[i]!, data: { ...base, runs: kernels.describe(), policy: labels[i]!, ...measured } });
  }
}

function throughputUnits(ctx: SuiteContext, shared: PreparedCache): WorkUnit[] {
  const cfg = ctx.config.bench.suites.speed!.throughput;
  if (!cfg) return [];
  const labels = throughputLabels(ctx.config);
  const seed = ctx.config.document.seed;
  const lengths = cfg.lengths ?? [cfg.length];
  return cfg.backends.flatMap((ref: BackendRef) =>
    lengths.map((length) => {
      const label = backendLabel(ref);
      const keys = labels.map((p) => `speed|throughput|${label}|H=${cfg.heads}|L=${length}|D=${cfg.headDim}|b=${cfg.budget}|${p}`);
      return {
        keys,
        cost: keys.length * ((cfg.reps + 3) * length * cfg.heads * cfg.headDim) / 2e7,
        async run(pending, emit) {
          const kernels = await ctx.backend(ref);
          const base = { kind: 'throughput' as const, backend: label, heads: cfg.heads, length, headDim: cfg.headDim };
          const budget = resolveBudget(cfg.budget, length);
          const kvBytes = 2 * cfg.heads * length * cfg.headDim * 4;
          if (!('fromHost' in kernels)) {
            labels.forEach((p, i) => {
              if (pending.has(keys[i]!)) emit({ key: keys[i]!, data: { ...base, policy: p, unavailable: kernels.reason, kept: budget, medianMs: Number.NaN, samplesMs: [], readBytes: kvBytes, writeBytes: 0, bandwidth: Number.NaN, floorMs: Number.NaN, fraction: Number.NaN } satisfies ThroughputItem });
            });
            return;
          }
          const prepared = await prepare(shared, kernels, cfg.heads, length, cfg.headDim, itemSeed(seed, 'throughput', length));
          await emitPerPolicy(labels, keys, pending, emit, kernels, base, async (policyLabel): Promise<ThroughputMeasured> => {
            const policy = ctx.policy(firstVariant(ctx.config, policyLabel));
            // Bandwidth is measured inside the item, next to the timing it is compared with.
            const bandwidth = measureCopyBandwidth(kvBytes);
            const { samples, kept } = await timePrefill(kernels, policy, prepared, budget, cfg.reps, seed);
            const peak = await peakOfPrefill(kernels, policy, prepared, budget, seed);
            const medianMs = median(samples);
            const writeBytes = 2 * cfg.heads * kept * cfg.headDim * 4;
            const floor = copyFloor({ readBytes: kvBytes, writeBytes, bandwidth, ms: medianMs });
            return {
              kept,
              medianMs,
              samplesMs: samples,
              readBytes: kvBytes,
              writeBytes,
              bandwidth,
              floorMs: floor.floorMs,
              fraction: floor.fraction,
              ...(peak ? { peakBytes: peak.bytes, peakOf: peak.of } : {}),
            };
          });
        },
      };
    }),
  );
}

/** A decode-step case on the host: what {@link stepOnce} uploads afresh for every step it times. */
export interface StepPrepared {
  /** The cache at its budget plus `extra` new tokens, with scores accumulated over earlier queries. */
  readonly layer: HostLayer;
  /** The newest token's attention over every slot. */
  readonly attention: HostTensor;
  /** The newest token's queries `[queryHeads, 1, headDim]` and position `[1]`. */
  readonly query: HostTensor;
  /** The newest token's position `[1]`. */
  readonly queryPosition: HostTensor;
}

/**
 * A cache of `length + extra` slots (the budget plus the tokens appended since the last eviction), its
 * scores the attention 16 earlier queries accumulated, and the newest token's query and attention
 * (computed once, not timed).
 */
async function prepareStep(kernels: KVKernels<unknown>, heads: number, length: number, headDim: number, group: number, seed: number, extra: number): Promise<StepPrepared> {
  const n = 17;
  const L = length + extra;
  const data = syntheticLayer({ heads, length: L, headDim, queryHeads: heads * group, queries: n, seed });
  const { attention: history, lastAttention: last } = await observeOnce(kernels, data);
  const D = headDim;
  const qh = heads * group;
  const query = new Float32Array(qh * D);
  for (let h = 0; h < qh; h++) query.set(data.queries.data.subarray((h * n + n - 1) * D, (h * n + n) * D), h * D);
  return {
    layer: { ...data.layer, scores: history as HostTensor<'float32'> },
    attention: last,
    query: hostTensor('float32', [qh, 1, D], query),
    queryPosition: hostTensor('int32', [1], [L - 1]),
  };
}

/**
 * Untimed steps before the timed ones. A step takes about a millisecond, too short for one call to get its
 * loops optimised: with a single warm-up the first timed steps ran unoptimised code (10-40 ms against a
 * steady 1 ms on reference and onnx alike), and with three, onnx's decode-step-only runs still gave 1.04-1.27
 * ms for H2O where 200 timed steps settle at 0.70-0.75 ms (issue 12, fifth session: `bench/RESULTS.md`).
 * A decode loop runs the step once per token, so the steady state is what a token costs.
 */
const STEP_WARMUPS = 20;

/**
 * Median time of `policy.step` on fresh uploads of the prepared cache (budget `length`), and of the
 * newest token's attention over the same upload just before it (upload not timed), after
 * {@link STEP_WARMUPS} untimed steps.
 */
async function timeStep(kernels: KVKernels<unknown>, policy: KVCachePolicy, p: StepPrepared, length: number, reps: number, seed: number): Promise<{ step: number[]; attention: number[] }> {
  const step: number[] = [];
  const attention: number[] = [];
  for (let r = 0; r < reps + STEP_WARMUPS; r++) {
    const { stepMs, attentionMs } = await stepOnce(kernels, policy, p, length, seed);
    if (r >= STEP_WARMUPS) {
      attention.push(attentionMs);
      step.push(stepMs);
    }
  }
  return { step, attention };
}

/**
 * One decode step on a fresh upload of `p` (budget `length`), timed with the newest token's attention just before it.
 * Exported from this module (not the package) for bench/step-layout.mjs, which times it on other cache layouts.
 */
export async function stepOnce(kernels: KVKernels<unknown>, policy: KVCachePolicy, p: StepPrepared, length: number, seed: number): Promise<{ stepMs: number; attentionMs: number }> {
  const layer = layerFromHost(kernels, p.layer);
  const obs: Observation<unknown> = {
    ...(policy.needs.includes('attention') ? { attention: kernels.fromHost(p.attention) } : {}),
    ...(policy.needs.includes('lastAttention') ? { lastAttention: kernels.fromHost(p.attention) } : {}),
  };
  const q = kernels.fromHost(p.query);
  const qp = kernels.fromHost(p.queryPosition);
  // The step owns its fresh upload, as a cache manager owns its caches: it may evict in place (H2O, CaM
  // on backends with KVKernels.editView: reference, onnx on CPU, tfjs on its wasm engine).
  const ctx = createContext({ kernels, budget: length, promptLength: length, seed, step: 1, newTokens: 1, inPlace: true });
  flushCaches();
  const t0 = performance.now();
  const seen = kernels.observe(layer, q, qp);
  await kernels.toHost(seen.attention);
  const t1 = performance.now();
  const out = await policy.step(layer, obs, ctx);
  await kernels.toHost(out.counts);
  const t2 = performance.now();
  kernels.dispose(q, qp, seen.attention, seen.lastAttention, obs.attention, obs.lastAttention);
  disposeLayer(kernels, out, layer);
  disposeLayer(kernels, layer);
  return { stepMs: t2 - t1, attentionMs: t1 - t0 };
}

/** The `every` of a variant's `decode: { every: n }` option, or 1 (evict at every step). */
function evictionInterval(v: Variant): number {
  const d = v.options.decode as { every?: unknown } | undefined;
  return typeof d === 'object' && d !== null && typeof d.every === 'number' ? d.every : 1;
}

function stepUnits(ctx: SuiteContext): WorkUnit[] {
  const cfg = ctx.config.bench.suites.speed!.step;
  if (!cfg) return [];
  const labels = stepLabels(ctx.config);
  const seed = ctx.config.document.seed;
  return cfg.backends.map((ref: BackendRef) => {
    const label = backendLabel(ref);
    const keys = labels.map((p) => `speed|step|${label}|H=${cfg.heads}|L=${cfg.length}|D=${cfg.headDim}|G=${cfg.group}|${p}`);
    return {
      keys,
      cost: keys.length * ((2 * (cfg.reps + STEP_WARMUPS) + 1) * cfg.length * cfg.heads * cfg.headDim * (1 + cfg.group)) / 2e7,
      async run(pending, emit) {
        const kernels = await ctx.backend(ref);
        const base = { kind: 'step' as const, backend: label, heads: cfg.heads, length: cfg.length, headDim: cfg.headDim, queryHeads: cfg.heads * cfg.group };
        if (!('fromHost' in kernels)) {
          labels.forEach((p, i) => {
            if (pending.has(keys[i]!)) emit({ key: keys[i]!, data: { ...base, policy: p, every: 1, unavailable: kernels.reason, stepMs: Number.NaN, attentionMs: Number.NaN, ratio: Number.NaN, stepSamplesMs: [], attentionSamplesMs: [] } satisfies StepItem });
          });
          return;
        }
        const prepared = new Map<number, StepPrepared>();
        const cacheOf = async (extra: number): Promise<StepPrepared> => {
          let p = prepared.get(extra);
          if (!p) prepared.set(extra, (p = await prepareStep(kernels, cfg.heads, cfg.length, cfg.headDim, cfg.group, itemSeed(seed, 'step', extra), extra)));
          return p;
        };
        await emitPerPolicy(labels, keys, pending, emit, kernels, base, async (policyLabel): Promise<StepMeasured> => {
          const variant = firstVariant(ctx.config, policyLabel);
          const policy = ctx.policy(variant);
          const every = evictionInterval(variant);
          // Every step: the token just appended makes the cache one over its budget.
          const plain = await timeStep(kernels, policy, await cacheOf(1), cfg.length, cfg.reps, seed);
          let stepMs = median(plain.step);
          let evictMs: number | undefined;
          if (every > 1) {
            // { every: n }: n - 1 steps only update scores (the one above), the n-th evicts n slots.
            const evicting = await timeStep(kernels, policy, await cacheOf(every), cfg.length, cfg.reps, seed);
            evictMs = median(evicting.step);
            stepMs = (evictMs + (every - 1) * stepMs) / every;
          }
          const attentionMs = median(plain.attention);
          return {
            every,
            ...(evictMs === undefined ? {} : { evictingStepMs: evictMs }),
            stepMs,
            attentionMs,
            ratio: stepMs / attentionMs,
            stepSamplesMs: plain.step,
            attentionSamplesMs: plain.attention,
          };
        });
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

function scalingUnits(ctx: SuiteContext, shared: PreparedCache): WorkUnit[] {
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
          const prepared = await prepare(shared, kernels, cfg.heads, L, cfg.headDim, itemSeed(seed, 'scaling', L));
          const { samples } = await timePrefill(kernels, policy, prepared, resolveBudget(cfg.budget, L), cfg.reps, seed);
          emit({ key: keys[i]!, data: { kind: 'scaling', backend, policy: label, length: L, medianMs: median(samples), samplesMs: samples } satisfies ScalingItem });
        }
      },
    };
  });
}

/** One note per backend saying what it runs on, after a table of its items. */
function runsNotes(items: readonly BackendItem[]): string[] {
  const runs = [...new Map(items.filter((r) => r.runs).map((r) => [r.backend, r.runs!])).entries()];
  return runs.length > 0 ? ['', ...runs.map(([b, r]) => `- ${b}: ${r}`)] : [];
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
    const shared: PreparedCache = new Map();
    return [...throughputUnits(ctx, shared), ...stepUnits(ctx), ...decodeUnits(ctx), ...scalingUnits(ctx, shared)];
  },

  aggregate(records, config) {
    const data = records.map((r) => r.data as ThroughputItem | StepItem | DecodeItem | ScalingItem);
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
      step: data.filter((d): d is StepItem => d.kind === 'step'),
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
      const lengths = t.lengths ?? [t.length];
      out.push(
        `One prefill compression of a synthetic layer (${t.heads} kv heads x ${lengths.join(' and ')} tokens x ${t.headDim} dims, float32; testkit's drifting keys) to a budget of ${t.budget}, median of ${t.reps} after ${PREFILL_WARMUPS} untimed calls; the attention it needs is computed before the timer starts, and the upload is not timed; each timed call starts after a 64 MiB write (twice the L3 cache), so the layer comes from memory whatever its size. ` +
          'The floor is the time to read every K/V byte once and write every kept K/V byte once at the copy bandwidth measured inside the same item (fastest of 9 Float32Array.set copies of a K/V-sized buffer into memory touched before); "x floor" = measured time / floor time (1 would be copy speed). ' +
          'Policies are created with validated options and run unguarded (no finite-check pass), so the time is the compression alone. ' +
          'Peak bytes: what one more (untimed) compression held above its inputs: on reference and onnx the tensor buffers of the backend\'s pool (outputs and uploads; kernel scratch and ORT\'s arena are not counted), on tfjs the engine\'s tensor bytes.',
        '',
      );
      out.push(
        table(
          ['backend', 'policy', 'tokens', 'time', 'x floor', 'tokens/s', 'K/V GB/s', 'copy GB/s', 'floor', 'peak bytes'],
          m.throughput.map((r) =>
            r.unavailable
              ? [r.backend, r.policy, String(r.length), `unavailable: ${r.unavailable}`, '', '', '', '', '', '']
              : [
                  r.backend,
                  r.policy,
                  String(r.length),
                  ms(r.medianMs),
                  `${num(r.medianMs / r.floorMs, 2)}x`,
                  num((r.length / r.medianMs) * 1000, 0),
                  num(r.readBytes / r.medianMs / 1e6, 2),
                  num(r.bandwidth / 1e9, 1),
                  ms(r.floorMs),
                  r.peakBytes === undefined ? '–' : bytes(r.peakBytes),
                ],
          ),
        ),
      );
      out.push(...runsNotes(m.throughput));
      out.push('', '![throughput as a fraction of the floor](plots/throughput-floor.svg)', '');
    }
    if (cfg.step) {
      const st = cfg.step;
      out.push('### Decode step: one eviction against that step\'s attention', '');
      out.push(
        `A cache at its budget of ${st.length} slots (${st.heads} kv heads x ${st.headDim} dims) plus the token just appended, its scores the attention of 16 earlier queries: the policy's step (decode mode "evict": accumulate the new token's attention, select, evict one slot per head; in place on every backend here that can edit its tensors (reference, onnx on CPU, tfjs on its wasm engine; \`KVKernels.editView\`), where the step owns the cache as a cache manager does: the newest row replaces the evicted one, no cache copy; functional elsewhere) against that token's attention on the same backend ` +
          `(the observe kernel for ${st.heads * st.group} query heads: logits and softmax over the ${st.length + 1} slots; the product with the values, as large again, is not counted, so the ratio errs against the step). Median of ${st.reps} after ${STEP_WARMUPS} untimed steps (so V8 has optimised the step's code, as in a long decode), interleaved on the same upload.`,
        '',
      );
      out.push(
        'Policies with `decode: { every: n }` evict n slots once every n tokens (lazy compaction): their step is the mean over n tokens, from the timed step that only accumulates and the timed step that evicts n slots (shown in brackets).',
        '',
      );
      out.push(
        table(
          ['backend', 'policy', 'evicts', 'step per token', 'attention', 'step / attention'],
          m.step.map((r) =>
            r.unavailable
              ? [r.backend, r.policy, '', `unavailable: ${r.unavailable}`, '', '']
              : [r.backend, r.policy, r.every === 1 ? 'every token' : `every ${r.every} tokens`, r.evictingStepMs === undefined ? ms(r.stepMs) : `${ms(r.stepMs)} (${ms(r.evictingStepMs)})`, ms(r.attentionMs), pct(r.ratio, 1)],
          ),
        ),
      );
      out.push(...runsNotes(m.step), '');
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
        `Prefill compression of one synthetic layer (${s.heads} kv heads x L tokens x ${s.headDim} dims) to a budget of ${s.budget} on the ${backendLabel(s.backend)} backend, median of ${s.reps}, each call starting from memory (after a 64 MiB write), so the curve shows the algorithm's growth, not the cache hierarchy's. ` +
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
      `decode tok/s: median over ${cfg.rounds} rounds of generating ${cfg.tokens} tokens after a ${cfg.prompt}-token prompt (forward pass + policy step + greedy pick); cache bytes: the cache at the end of that generation (a policy that evicts in place, such as H2O or CaM, holds one spare row per kv head and layer there, which the next token fills)`,
      ...(marks.size > 0
        ? [`${OVER_BUDGET} ended over budget: more slots at the end of the generation than the budget allows (a policy that compresses only once, after the prompt, such as KVMerger with its default decodeInterval 0, keeps the generated tokens)`]
        : []),
    ];
    return { columns: ['decode tok/s', 'cache bytes'], rows, legend, marks };
  },
};
