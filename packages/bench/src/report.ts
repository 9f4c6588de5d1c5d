import { cpus, loadavg, totalmem } from 'node:os';
import type { BenchConfig, SuiteName, Variant } from './config.js';
import type { ModelInfo } from './model.js';
import { table } from './suites/common.js';
import type { SummaryCell, SuiteSummary } from './suite.js';

/** The machine a run measured on (speed numbers mean little without it). */
export interface MachineInfo {
  /** Node.js version. */
  readonly node: string;
  /** Platform and architecture. */
  readonly platform: string;
  /** CPU model. */
  readonly cpu: string;
  /** Logical cores. */
  readonly cores: number;
  /** Memory, GiB. */
  readonly memoryGiB: number;
  /** 1-minute load average when the run started. */
  readonly loadAtStart: number;
  /** 1-minute load average when it ended. */
  readonly loadAtEnd?: number;
}

/** Describe this machine now. */
export function machineInfo(): MachineInfo {
  const c = cpus();
  return {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpu: c[0]?.model.trim() ?? 'unknown',
    cores: c.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    loadAtStart: Math.round(loadavg()[0]! * 100) / 100,
  };
}

/** One row of the summary table. */
export interface SummaryRow {
  /** The variant. */
  readonly variant: Variant;
  /** Cell per column (NaN value and `–` text where a suite has no result). */
  readonly cells: readonly SummaryCell[];
  /** Marks the suites set on this row (explained in the legend), joined; empty when none. */
  readonly mark: string;
}

/** The summary table: one row per policy x budget, columns contributed by the suites that ran. */
export interface Summary {
  /** Column names after policy and budget. */
  readonly columns: readonly string[];
  /** Rows in sweep order. */
  readonly rows: readonly SummaryRow[];
  /** What each column measures and over how many items, and what the row marks mean. */
  readonly legend: readonly string[];
}

/** Join the suites' summary columns into one table. */
export function buildSummary(config: BenchConfig, parts: readonly SuiteSummary[]): Summary {
  const columns = parts.flatMap((p) => p.columns);
  const rows = config.variants.map((variant) => ({
    variant,
    cells: parts.flatMap((p) => p.rows.get(variant.id) ?? p.columns.map(() => ({ value: Number.NaN, text: '–' }))),
    mark: parts.map((p) => p.marks?.get(variant.id) ?? '').join(''),
  }));
  return { columns, rows, legend: parts.flatMap((p) => p.legend ?? []) };
}

/** The summary as a Markdown table; a row's marks follow its policy label. */
export function summaryTable(summary: Summary): string {
  return table(
    ['policy', 'budget', ...summary.columns],
    summary.rows.map((r) => [`${r.variant.label}${r.mark ? ` ${r.mark}` : ''}`, r.variant.policy === 'full' ? '1 (full)' : String(r.variant.budget), ...r.cells.map((c) => c.text)]),
  );
}

/** The legend of the summary table as a Markdown list (empty when no suite wrote one). */
export function summaryLegend(summary: Summary): string {
  return summary.legend.map((l) => `- ${l}`).join('\n');
}

/** What the report header states about a run. */
export interface ReportHeader {
  /** Run id. */
  readonly id: string;
  /** Command that started the run. */
  readonly command: string;
  /** Commands of later sessions that resumed it. */
  readonly resumedWith?: readonly string[];
  /** Start time of the first session (ISO). */
  readonly startedAt: string;
  /** Wall seconds of the sessions that computed items. */
  readonly seconds: number;
  /** Items finished. */
  readonly done: number;
  /** Items planned. */
  readonly total: number;
  /** Sessions that computed items (more than one: the run was interrupted and resumed). */
  readonly sessions: number;
  /** The model, when a suite loaded it. */
  readonly model?: ModelInfo;
  /** Distinct weight stamps over the sessions of the run (more than one: items come from different weights). */
  readonly weightStamps: readonly string[];
  /** The machine. */
  readonly machine: MachineInfo;
  /** Suites that ran. */
  readonly suites: readonly SuiteName[];
}

/** The header and summary of report.md. */
export function reportHeader(config: BenchConfig, h: ReportHeader, summary: Summary): string {
  const lines = [`# kvfold benchmark: ${config.bench.name}`, ''];
  lines.push(`- command: \`${h.command}\`${h.resumedWith && h.resumedWith.length > 0 ? ` (resumed with ${h.resumedWith.map((c) => `\`${c}\``).join(', ')})` : ''}`);
  lines.push(`- run: ${h.id}, started ${h.startedAt}, ${Math.round(h.seconds)} s of measuring${h.sessions > 1 ? ` over ${h.sessions} sessions` : ''}, ${h.done}/${h.total} items${h.done < h.total ? ' — INCOMPLETE: resume with `kvfold bench --resume <this folder>`' : ''}`);
  if (h.model) {
    const m = h.model;
    const trained = m.trainedSteps !== undefined ? `, trained ${m.trainedSteps} steps${m.tokensSeen !== undefined ? ` (${(m.tokensSeen / 1e6).toFixed(1)} M tokens)` : ''}` : '';
    lines.push(`- model: ${m.source === 'embedded' ? 'embedded (@kvfold/model-tiny)' : m.source}${trained}; ${m.modelType}, ${m.layers} layers, ${m.heads} query / ${m.kvHeads} kv heads, head dim ${m.headDim}, vocab ${m.vocabSize} (${m.tokenizer} tokenizer); weights stamp ${m.weightsStamp}; kernels: ${m.kernels}`);
  }
  if (h.weightStamps.length > 1) lines.push(`- WARNING: the sessions of this run saw ${h.weightStamps.length} different weight files (${h.weightStamps.join(', ')}); items mix model versions.`);
  lines.push(`- machine: ${h.machine.cpu} x ${h.machine.cores}, ${h.machine.memoryGiB} GiB, ${h.machine.platform}, Node ${h.machine.node}; load average ${h.machine.loadAtStart} at start${h.machine.loadAtEnd !== undefined ? `, ${h.machine.loadAtEnd} at end` : ''}`);
  lines.push(`- policies: ${[...new Set(config.variants.map((v) => v.label))].join(', ')}; budgets ${config.bench.budgets.join(', ')} (full once, at 1); seed ${config.document.seed}; suites: ${h.suites.join(', ')}`);
  lines.push('', '## Summary', '', summaryTable(summary), '');
  if (summary.legend.length > 0) lines.push(summaryLegend(summary), '');
  lines.push('Accuracy is exact match of the greedy answer; perplexity is on held-out text; attn error is the mean relative error of attention outputs over layers; decode tok/s and cache bytes come from generation with each policy (full = no compression). Losses are reported as measured; nothing is tuned per policy.', '');
  return lines.join('\n');
}
