import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import {
  BENCH_RUNTIMES,
  PRESET_NAMES,
  Progress,
  SUITE_NAMES,
  createKVFold,
  newRunId,
  preset,
  readStoredConfig,
  resolveBenchConfig,
  resultsSection,
  runBench,
  summaryLegend,
  updateResults,
  type PolicySpec,
  type PresetName,
  type ProgressMode,
  type RunResult,
} from '@kvfold/bench';
import { UnknownPolicyError } from '@kvfold/core';
import { EXIT, UsageError } from '../errors.js';
import { commandName, list, parseBudget, readJsonFile, type CliIO } from '../io.js';

/** Options of `kvfold bench` (and `kvfold demo`). */
export interface BenchOptions {
  /** Config file. */
  readonly config?: string;
  /** Built-in preset (default, demo, smoke). */
  readonly preset?: string;
  /** Comma-separated suites to run. */
  readonly suite?: string;
  /** Comma-separated policy names or labels. */
  readonly policy?: string;
  /** Comma-separated budget ratios. */
  readonly budget?: string;
  /** Model folder or `embedded`. */
  readonly model?: string;
  /** Comma-separated runtimes (tfjs, transformers.js). */
  readonly runtime?: string;
  /** Folder of run folders. */
  readonly out?: string;
  /** Run id (the run folder's name under the output folder); an existing folder resumes. */
  readonly id?: string;
  /** Run folder to resume with its stored config. */
  readonly resume?: string;
  /** No progress output. */
  readonly quiet?: boolean;
  /** JSON-lines events on stdout. */
  readonly jsonl?: boolean;
  /** Results file whose benchmark section is replaced after a complete run. */
  readonly updateResults?: string;
}

/** A config document as the overrides edit it. */
export interface ConfigDocument {
  /** The benchmark section (validated later). */
  bench?: Record<string, unknown>;
  /** Every other top-level field, kept as is. */
  [key: string]: unknown;
}

/** Apply command-line overrides to a config document (a copy is changed). */
export function applyOverrides(document: unknown, o: BenchOptions, registered: readonly string[]): ConfigDocument {
  const doc = structuredClone(document ?? {}) as ConfigDocument;
  const bench = (doc.bench ??= {});
  if (typeof bench !== 'object' || bench === null || Array.isArray(bench)) return doc; // validation reports it
  if (o.suite !== undefined) {
    const wanted = list(o.suite);
    if (wanted.length === 0) throw new UsageError(`--suite needs at least one of: ${SUITE_NAMES.join(', ')}`);
    for (const s of wanted) if (!(SUITE_NAMES as readonly string[]).includes(s)) throw new UsageError(`unknown suite ${JSON.stringify(s)}; suites: ${SUITE_NAMES.join(', ')}`);
    const current = (bench.suites ?? {}) as Record<string, unknown>;
    bench.suites = Object.fromEntries(wanted.map((s) => [s, current[s] ?? {}]));
  }
  if (o.policy !== undefined) {
    const wanted = list(o.policy);
    if (wanted.length === 0) throw new UsageError('--policy needs at least one policy name');
    const sweep = ((bench.policies as (string | PolicySpec)[] | undefined) ?? ['full', 'window', 'h2o', 'cam', 'kvmerger']).map((p) => (typeof p === 'string' ? { name: p } : p));
    bench.policies = wanted.map((w) => {
      const hit = sweep.find((s) => (s.label ?? s.name) === w) ?? sweep.find((s) => s.name === w);
      if (hit) return hit;
      if (!registered.includes(w)) throw new UnknownPolicyError(w, registered);
      return { name: w };
    });
  }
  if (o.budget !== undefined) {
    const budgets = list(o.budget).map((b) => parseBudget(b));
    if (budgets.length === 0) throw new UsageError('--budget needs at least one ratio in (0, 1]');
    bench.budgets = [...new Set(budgets)];
  }
  if (o.model !== undefined) bench.model = o.model;
  if (o.runtime !== undefined) {
    const runtimes = list(o.runtime);
    const bad = runtimes.find((r) => !(BENCH_RUNTIMES as readonly string[]).includes(r));
    if (bad !== undefined || runtimes.length === 0) throw new UsageError(`--runtime ${JSON.stringify(o.runtime)}: runtimes are ${BENCH_RUNTIMES.join(', ')}`);
    bench.runtimes = [...new Set(runtimes)];
  }
  if (o.out !== undefined) bench.output = o.out;
  return doc;
}

function progressMode(o: BenchOptions): ProgressMode {
  if (o.quiet && o.jsonl) throw new UsageError('--quiet and --jsonl exclude each other');
  return o.quiet ? 'quiet' : o.jsonl ? 'jsonl' : 'auto';
}

/** Run `kvfold bench` with parsed options; returns the exit code. */
export async function benchCommand(o: BenchOptions, io: CliIO, command: string): Promise<number> {
  const sources = [o.config, o.preset, o.resume].filter((x) => x !== undefined).length;
  if (sources > 1) throw new UsageError('give one of --config, --preset and --resume');
  let document: unknown;
  let dir: string | undefined;
  if (o.resume !== undefined) {
    if (o.suite ?? o.policy ?? o.budget ?? o.model ?? o.runtime ?? o.out ?? o.id) throw new UsageError('--resume continues a run with its stored config; it takes no --suite, --policy, --budget, --model, --runtime, --out or --id');
    dir = resolve(io.cwd, o.resume);
    document = readStoredConfig(dir).document;
  } else if (o.config !== undefined) {
    document = readJsonFile(io, o.config);
  } else {
    const name = o.preset ?? 'default';
    if (!(PRESET_NAMES as readonly string[]).includes(name)) throw new UsageError(`unknown preset ${JSON.stringify(name)}; presets: ${PRESET_NAMES.join(', ')}`);
    document = preset(name as PresetName);
  }
  const plugins = (document as { plugins?: unknown } | null)?.plugins;
  const kv = await createKVFold({ ...(Array.isArray(plugins) && plugins.every((p) => typeof p === 'string') ? { plugins: plugins as string[] } : {}), from: io.cwd });
  const doc = o.resume !== undefined ? (document as ConfigDocument) : applyOverrides(document, o, kv.policies.names());
  const config = resolveBenchConfig(kv, doc, o.resume !== undefined ? join(resolve(io.cwd, o.resume), 'config.json') : (o.config ?? `preset ${o.preset ?? 'default'}`));
  if (o.id !== undefined) {
    if (!/^[A-Za-z0-9_.-]+$/.test(o.id) || o.id === '.' || o.id === '..') throw new UsageError(`--id ${JSON.stringify(o.id)} may only hold letters, digits, "_", "." and "-" (and is not "." or "..")`);
    dir = join(resolve(io.cwd, config.bench.output), o.id);
  } else if (dir === undefined) {
    // bench.output is relative to the working directory the command runs in (io.cwd), not the process's.
    dir = join(resolve(io.cwd, config.bench.output), newRunId(config.bench.name));
  }
  const progress = new Progress(progressMode(o), { stderr: io.stderr, stdout: io.stdout });
  const controller = new AbortController();
  let interrupts = 0;
  const onSigint = (): void => {
    interrupts++;
    if (interrupts > 1) process.exit(EXIT.interrupted);
    controller.abort();
    io.stderr.write('\nkvfold: stopping after the current item (Ctrl-C again to quit now); the run folder stays resumable\n');
  };
  process.on('SIGINT', onSigint);
  let result: RunResult;
  try {
    result = await runBench(kv, config, {
      ...(dir !== undefined ? { dir } : {}),
      progress,
      signal: controller.signal,
      command,
    });
  } finally {
    process.off('SIGINT', onSigint);
  }
  const reportFile = join(result.dir, 'report.md');
  if (o.jsonl) {
    io.stdout.write(`${JSON.stringify({ type: 'summary', id: result.id, dir: result.dir, complete: result.done === result.total, summary: result.metrics.summary })}\n`);
  } else {
    const legend = summaryLegend(result.summary);
    const plotsDir = join(result.dir, 'plots');
    const plots = existsSync(plotsDir) ? readdirSync(plotsDir).filter((f) => f.endsWith('.svg')).length : 0;
    io.stdout.write(`\n${result.summaryMarkdown}\n${legend ? `\n${legend}\n` : ''}\nreport: ${reportFile}\nplots:  ${plotsDir}${sep} (${plots} SVG files)\n`);
  }
  if (result.interrupted || result.done < result.total) {
    io.stderr.write(`kvfold: run incomplete (${result.done}/${result.total} items); resume with: ${commandName()} bench --resume ${result.dir}\n`);
    return EXIT.interrupted;
  }
  if (o.updateResults !== undefined) {
    const file = resolve(io.cwd, o.updateResults);
    updateResults(file, resultsSection(readFileSync(reportFile, 'utf8'), `Benchmark: \`${config.bench.name}\` sweep (kvfold bench)`));
    io.stderr.write(`kvfold: updated the benchmark section of ${file}\n`);
  }
  return EXIT.ok;
}

