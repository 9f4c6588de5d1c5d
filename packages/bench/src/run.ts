import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadavg } from 'node:os';
import type { KVCachePolicy, KVFold, KVKernels } from '@kvfold/core';
import { backendLabel, backendSpec, type BackendRef, type BenchConfig, type SuiteName, type Variant } from './config.js';
import { openModel, resolveModelFolder, type BenchModel, type ModelInfo } from './model.js';
import { renderSvg } from './plots.js';
import { Progress } from './progress.js';
import { buildSummary, machineInfo, reportHeader, summaryTable, type MachineInfo, type Summary } from './report.js';
import { RUN_FILES, RunStore, newRunId } from './store.js';
import { breathe, type Suite, type SuiteContext, type UnavailableBackend, type WorkUnit } from './suite.js';
import { fidelitySuite } from './suites/fidelity.js';
import { needleSuite } from './suites/needle.js';
import { perplexitySuite } from './suites/perplexity.js';
import { speedSuite } from './suites/speed.js';
import { checkTransformersRuntime } from './peers.js';

/** Every suite by name. */
export const SUITES: { readonly [K in SuiteName]: Suite<unknown> } = {
  needle: needleSuite as Suite<unknown>,
  fidelity: fidelitySuite as Suite<unknown>,
  perplexity: perplexitySuite as Suite<unknown>,
  speed: speedSuite as Suite<unknown>,
};

/** Options of {@link runBench}. */
export interface RunOptions {
  /** Run folder, created or resumed; default `<bench.output>/<new run id>`. */
  readonly dir?: string;
  /** Progress reporter; default `new Progress('auto')`. */
  readonly progress?: Progress;
  /** Stops the run after the item in progress (what SIGINT does in the CLI); the folder stays resumable. */
  readonly signal?: AbortSignal;
  /** The command line, quoted in the report. */
  readonly command?: string;
  /** A model already loaded (it is not disposed); default: loaded from `bench.model` on first use. */
  readonly model?: BenchModel;
}

/** What {@link runBench} returns. */
export interface RunResult {
  /** Run id. */
  readonly id: string;
  /** Absolute run folder. */
  readonly dir: string;
  /** Items planned. */
  readonly total: number;
  /** Items finished (reused + computed). */
  readonly done: number;
  /** Items computed in this call. */
  readonly computed: number;
  /** Items found finished when the folder was opened. */
  readonly reused: number;
  /** True when the signal stopped the run before every item was done. */
  readonly interrupted: boolean;
  /** The summary table. */
  readonly summary: Summary;
  /** The summary as Markdown. */
  readonly summaryMarkdown: string;
  /** Everything written to metrics.json. */
  readonly metrics: BenchMetrics;
  /** Seconds of this call. */
  readonly seconds: number;
}

/** The run part of metrics.json. */
export interface RunInfo {
  /** Run id. */
  readonly id: string;
  /** Command that ran this session. */
  readonly command: string;
  /** When this session started (ISO). */
  readonly startedAt: string;
  /** When it finished (ISO). */
  readonly finishedAt: string;
  /** Seconds of this session. */
  readonly seconds: number;
  /** Every planned item is finished. */
  readonly complete: boolean;
  /** Items planned. */
  readonly total: number;
  /** Items finished. */
  readonly done: number;
  /** Items reused from earlier sessions. */
  readonly reused: number;
}

/** One row of the summary in metrics.json. */
export interface SummaryDataRow {
  /** Variant id (`label@budget`). */
  readonly variant: string;
  /** Policy name. */
  readonly policy: string;
  /** Policy label. */
  readonly label: string;
  /** Budget ratio. */
  readonly budget: number;
  /** Value per column (null where there is none). */
  readonly values: Record<string, number | null>;
}

/** The summary table as data. */
export interface SummaryData {
  /** Column names. */
  readonly columns: readonly string[];
  /** Rows in sweep order. */
  readonly rows: SummaryDataRow[];
}

/** Content of metrics.json. */
export interface BenchMetrics {
  /** The run. */
  readonly run: RunInfo;
  /** Hash of the validated config. */
  readonly configHash: string;
  /** The model, when loaded in this session. */
  readonly model?: ModelInfo;
  /** Weight stamps seen over the sessions of this run folder. */
  readonly weightStamps: string[];
  /** The machine. */
  readonly machine: MachineInfo;
  /** Per-suite metrics. */
  readonly suites: Partial<Record<SuiteName, unknown>>;
  /** The summary table as data. */
  readonly summary: SummaryData;
}

/** Thrown inside a unit's emit to stop at an item boundary. */
class Interrupted extends Error {}

/** One session of a run folder: a line of sessions.jsonl. */
export interface SessionRecord {
  /** When it started (ISO). */
  readonly startedAt: string;
  /** Its command. */
  readonly command: string;
  /** Items found finished when it opened the folder. */
  readonly reused: number;
  /** Lines of predictions.jsonl it moved to predictions.rejected.jsonl (not valid records), when any. */
  readonly rejected?: number;
  /** Items it computed. */
  readonly computed: number;
  /** Its wall time, seconds. */
  readonly seconds: number;
  /** The model it loaded, if any. */
  readonly model?: ModelInfo;
  /** The machine it ran on. */
  readonly machine?: MachineInfo;
}

function readSessions(dir: string): SessionRecord[] {
  const file = join(dir, 'sessions.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as SessionRecord];
      } catch {
        return [];
      }
    });
}

/**
 * Run (or resume) a benchmark: every suite of the config over every variant, appending each finished
 * item to the run folder's predictions.jsonl, then aggregate every finished item into metrics.json,
 * report.md and plots/*.svg. Interrupted runs (signal) still write a report of what is done and resume
 * from the same folder later.
 * @throws the typed errors of model loading, backends and policies (a failing item stops the run; the
 *   items finished before it stay in the folder).
 */
export async function runBench(kv: KVFold, config: BenchConfig, options: RunOptions = {}): Promise<RunResult> {
  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  const progress = options.progress ?? new Progress('auto');
  // A missing model folder is an input error: report it before a run folder is created.
  const speed = config.bench.suites.speed;
  if (!options.model && config.suites.some((s) => s !== 'speed' || (speed?.decode ?? null) !== null)) resolveModelFolder(config.bench.model);
  // So are the transformers.js runtime's optional peers, when a variant runs on it.
  if (config.variants.some((v) => v.runtime === 'transformers.js')) await checkTransformersRuntime();
  const dir = resolve(options.dir ?? join(config.bench.output, newRunId(config.bench.name)));
  const store = RunStore.open(dir, config, { warn: (m) => progress.warn(m) });
  try {
    return await runIn(store, kv, config, options, progress, dir, t0, startedAt);
  } finally {
    store.close();
  }
}

async function runIn(store: RunStore, kv: KVFold, config: BenchConfig, options: RunOptions, progress: Progress, dir: string, t0: number, startedAt: string): Promise<RunResult> {
  const command = options.command ?? 'runBench()';
  const machine = machineInfo();

  let modelPromise: Promise<BenchModel> | undefined = options.model ? Promise.resolve(options.model) : undefined;
  const backends = new Map<string, Promise<KVKernels<unknown> | UnavailableBackend>>();
  const ctx: SuiteContext = {
    config,
    kv,
    model: () => (modelPromise ??= openModel(config.bench.model, config.bench.engine)),
    backend(ref: BackendRef) {
      const label = backendLabel(ref);
      let p = backends.get(label);
      if (!p) {
        const spec = backendSpec(ref);
        p = kv.backend(spec.name, spec.options ?? {}).catch((e: Error) => ({ name: label, reason: e.message }));
        backends.set(label, p);
      }
      return p;
    },
    policy(variant: Variant): KVCachePolicy {
      return kv.policy(variant.policy, (variant.options ?? {}) as Record<string, unknown>, { guard: false });
    },
  };

  const plans = config.suites.map((name) => ({ name, suite: SUITES[name], units: SUITES[name].plan(ctx) }));
  const total = plans.reduce((a, p) => a + p.units.reduce((b, u) => b + u.keys.length, 0), 0);
  const reusedAll = plans.reduce((a, p) => a + p.units.reduce((b, u) => b + u.keys.filter((k) => store.has(k)).length, 0), 0);
  progress.emit({ type: 'run', id: store.id, dir, total, reused: reusedAll });
  progress.message(`run ${store.id}: ${total} items${reusedAll > 0 ? `, ${reusedAll} already done (resuming)` : ''} -> ${dir}`);

  let computed = 0;
  let interrupted = false;
  let failure: unknown;
  try {
    for (const { name, units } of plans) {
      if (interrupted) break;
      const suiteTotal = units.reduce((a, u) => a + u.keys.length, 0);
      const suiteReused = units.reduce((a, u) => a + u.keys.filter((k) => store.has(k)).length, 0);
      const unitCost = (u: WorkUnit) => (u.cost ?? u.keys.length) / Math.max(1, u.keys.length);
      const cost = {
        total: units.reduce((a, u) => a + unitCost(u) * u.keys.length, 0),
        reused: units.reduce((a, u) => a + unitCost(u) * u.keys.filter((k) => store.has(k)).length, 0),
      };
      const sp = progress.suite(name, suiteTotal, suiteReused, cost);
      try {
        for (const unit of units) {
          const pending = new Set(unit.keys.filter((k) => !store.has(k)));
          if (pending.size === 0) continue;
          if (options.signal?.aborted) {
            interrupted = true;
            break;
          }
          await breathe();
          if (options.signal?.aborted) {
            interrupted = true;
            break;
          }
          let last = performance.now();
          try {
            await unit.run(pending, (item) => {
              if (!pending.has(item.key)) throw new Error(`suite ${name} produced an unplanned or duplicate item ${item.key}`);
              pending.delete(item.key);
              const now = performance.now();
              const ms = now - last;
              last = now;
              store.append({ key: item.key, suite: name, ...(item.variant !== undefined ? { variant: item.variant } : {}), data: item.data, ms: Math.round(ms * 100) / 100, at: new Date().toISOString() });
              computed++;
              sp.tick(item.key, ms, unitCost(unit));
              if (options.signal?.aborted) throw new Interrupted('interrupted');
            });
          } catch (e) {
            if (e instanceof Interrupted) {
              interrupted = true;
              break;
            }
            throw e;
          }
        }
      } finally {
        sp.finish();
      }
    }
  } catch (e) {
    failure = e;
  }

  // Whatever happened, the finished items are reported (and remain in the folder for a resume).
  const model = modelPromise ? await modelPromise.catch(() => undefined) : undefined;
  const machineEnd: MachineInfo = { ...machine, loadAtEnd: Math.round(loadavg()[0]! * 100) / 100 };
  const session: SessionRecord = { startedAt, command, reused: store.reused, ...(store.rejected > 0 ? { rejected: store.rejected } : {}), computed, seconds: Math.round((performance.now() - t0) / 100) / 10, ...(model ? { model: model.info } : {}), machine: machineEnd };
  appendFileSync(join(dir, 'sessions.jsonl'), `${JSON.stringify(session)}\n`);
  // The report describes the sessions that measured something: a session that only re-renders a finished
  // run (computed 0) changes neither the command that made the numbers nor the model or machine behind them.
  const sessions = readSessions(dir);
  const measuring = sessions.filter((x) => x.computed > 0);
  const first = sessions[0] ?? session;
  const last = measuring.at(-1) ?? session;
  const reportModel = model?.info ?? [...measuring].reverse().find((x) => x.model)?.model;
  const weightStamps = [...new Set(measuring.flatMap((x) => (x.model ? [x.model.weightsStamp] : [])))];
  const measuredSeconds = measuring.reduce((a, x) => a + x.seconds, 0);
  const suites: Partial<Record<SuiteName, unknown>> = {};
  const parts = [];
  const sections: string[] = [];
  const plots = [];
  for (const { name, suite } of plans) {
    const m = suite.aggregate(store.records(name), config);
    suites[name] = m;
    parts.push(suite.summary(m, config));
    sections.push(suite.report(m, config));
    plots.push(...suite.plots(m, config));
  }
  const summary = buildSummary(config, parts);
  const done = plans.reduce((a, p) => a + p.units.reduce((b, u) => b + u.keys.filter((k) => store.has(k)).length, 0), 0);
  const seconds = (performance.now() - t0) / 1000;
  const header = reportHeader(
    config,
    {
      id: store.id,
      command: first.command,
      resumedWith: measuring.filter((x) => x !== first && x.startedAt !== first.startedAt).map((x) => x.command),
      startedAt: first.startedAt,
      seconds: measuredSeconds,
      done,
      total,
      sessions: measuring.length,
      ...(reportModel ? { model: reportModel } : {}),
      weightStamps,
      machine: last.machine ?? machineEnd,
      suites: config.suites,
    },
    summary,
  );
  store.writeText(RUN_FILES.report, [header, ...sections].join('\n'));
  for (const p of plots) store.writeText(join(RUN_FILES.plots, p.file), await renderSvg(p));
  const metrics: BenchMetrics = {
    run: { id: store.id, command, startedAt, finishedAt: new Date().toISOString(), seconds: Math.round(seconds * 10) / 10, complete: done === total, total, done, reused: store.reused },
    configHash: config.hash,
    ...(reportModel ? { model: reportModel } : {}),
    weightStamps,
    machine: last.machine ?? machineEnd,
    suites,
    summary: {
      columns: summary.columns,
      rows: summary.rows.map((r) => ({
        variant: r.variant.id,
        policy: r.variant.policy,
        label: r.variant.label,
        budget: r.variant.budget,
        values: Object.fromEntries(summary.columns.map((c, i) => [c, Number.isFinite(r.cells[i]!.value) ? r.cells[i]!.value : null])),
      })),
    },
  };
  store.writeJson(RUN_FILES.metrics, metrics);
  if (model && !options.model) model.model.dispose();
  if (failure !== undefined) throw failure;
  progress.emit({ type: 'done', id: store.id, dir, seconds: Math.round(seconds * 10) / 10 });
  return { id: store.id, dir, total, done, computed, reused: store.reused, interrupted, summary, summaryMarkdown: summaryTable(summary), metrics, seconds };
}
