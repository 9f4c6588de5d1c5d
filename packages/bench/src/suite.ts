import type { KVCachePolicy, KVFold, KVKernels } from '@kvfold/core';
import type { BackendRef, BenchConfig, SuiteName, Variant } from './config.js';
import type { BenchModel } from './model.js';
import type { ItemRecord } from './store.js';

/** What a unit hands the runner for each finished item (the runner adds suite, time and timestamp). */
export interface ItemResult<D = unknown> {
  /** The item's key (one of the unit's keys). */
  readonly key: string;
  /** Variant id, when the item belongs to one. */
  readonly variant?: string;
  /** Suite-specific result. */
  readonly data: D;
}

/**
 * A group of items that share expensive work (one prompt's full-cache prefill serves every policy x
 * budget). The runner passes the keys not finished yet; the unit computes only those.
 */
export interface WorkUnit {
  /** Keys of every item of the unit. */
  readonly keys: readonly string[];
  /**
   * Relative cost of the whole unit (about seconds on the embedded model), shared evenly by its keys;
   * the progress ETA weights items by it. Default: one per key.
   */
  readonly cost?: number;
  /** Compute the `pending` items, handing each to `emit` as soon as it is finished. */
  run(pending: ReadonlySet<string>, emit: (item: ItemResult) => void): Promise<void>;
}

/** A backend that could not be created here, and why. */
export interface UnavailableBackend {
  /** The backend's name. */
  readonly name: string;
  /** Why it cannot run (the typed error's message). */
  readonly reason: string;
}

/** What suites get from the runner. */
export interface SuiteContext {
  /** The validated configuration. */
  readonly config: BenchConfig;
  /** The kvfold instance (policies, backends, plugins). */
  readonly kv: KVFold;
  /** The model, loaded on first use and shared by every suite. */
  model(): Promise<BenchModel>;
  /** Kernels of a backend (created once per run), or why it cannot run. */
  backend(ref: BackendRef): Promise<KVKernels<unknown> | UnavailableBackend>;
  /** A fresh unguarded policy for a variant (options already validated); the cache manager guards it. */
  policy(variant: Variant): KVCachePolicy;
}

/** A table cell of the summary: a value with how to print it. */
export interface SummaryCell {
  /** The value (NaN for none). */
  readonly value: number;
  /** Printed form. */
  readonly text: string;
}

/** A figure of the report: a Vega-Lite specification rendered to `plots/<file>`. */
export interface PlotSpec {
  /** File name under plots/ (ends in .svg). */
  readonly file: string;
  /** Caption in the report. */
  readonly title: string;
  /** The Vega-Lite specification (data inlined). */
  readonly spec: Record<string, unknown>;
}

/** One benchmark suite: how it plans its items, aggregates them, and reports. */
export interface Suite<M = unknown> {
  /** Suite name. */
  readonly name: SuiteName;
  /** The units of work of this configuration. */
  plan(ctx: SuiteContext): WorkUnit[];
  /** Metrics from the finished items. */
  aggregate(records: readonly ItemRecord[], config: BenchConfig): M;
  /** The suite's section of report.md (Markdown, starting with a `##` heading). */
  report(metrics: M, config: BenchConfig): string;
  /** Figures of the suite. */
  plots(metrics: M, config: BenchConfig): PlotSpec[];
  /** Columns this suite adds to the summary table, per variant id. */
  summary(metrics: M, config: BenchConfig): SuiteSummary;
}

/** A suite's contribution to the summary table. */
export interface SuiteSummary {
  /** Column names. */
  readonly columns: readonly string[];
  /** Cells per variant id, one per column. */
  readonly rows: ReadonlyMap<string, readonly SummaryCell[]>;
  /** One line per column for the legend under the table: what it measures and over how many items (n). */
  readonly legend?: readonly string[];
  /** A mark per variant id (such as `*` for a row that ended over its budget), explained in `legend`. */
  readonly marks?: ReadonlyMap<string, string>;
}

export { splitTokens, type SplitTokens } from '@kvfold/runtime';

/**
 * Rough cost (about seconds for the embedded model on one core) of a unit that prefills `tokens` once and
 * runs `variants` policies after it: the prefill grows a bit under quadratically, the rest linearly.
 */
export function prefillCost(tokens: number, variants: number): number {
  const k = tokens / 1024;
  return 1.1 * k ** 1.85 + variants * (0.02 + 0.05 * k);
}

/**
 * Let the event loop run (signal handlers, timers). Model work resolves its promises as microtasks, so a
 * long unit would otherwise never let a SIGINT handler run; units call this between items.
 */
export function breathe(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** A stable 32-bit seed from the run seed and item coordinates (FNV-1a of their text). */
export function itemSeed(base: number, ...parts: readonly (string | number)[]): number {
  let h = 0x811c9dc5 ^ (base >>> 0);
  for (const ch of parts.join('|')) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return h >>> 0;
}
