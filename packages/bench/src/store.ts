import { appendFileSync, existsSync, mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError } from '@kvfold/core';
import type { BenchConfig, BenchDocument, SuiteName } from './config.js';

/** One finished item: a line of the run's append-only `predictions.jsonl`. */
export interface ItemRecord<D = unknown> {
  /** Unique key of the item in the run (suite, variant and the item's parameters). */
  readonly key: string;
  /** Suite that produced it. */
  readonly suite: SuiteName;
  /** Variant id (`label@budget`), when the item belongs to one. */
  readonly variant?: string;
  /** Suite-specific result: the prediction and what it is scored against, or a measurement. */
  readonly data: D;
  /** Time the item took, ms (shared work of a group is charged to its first item). */
  readonly ms: number;
  /** When it finished (ISO 8601). */
  readonly at: string;
}

/** What `config.json` of a run folder holds. */
export interface StoredConfig {
  /** Hash of the validated document (see {@link BenchConfig.hash}). */
  readonly hash: string;
  /** When the run folder was created. */
  readonly createdAt: string;
  /** The validated document. */
  readonly document: BenchDocument;
}

/** File names inside a run folder. */
export const RUN_FILES = {
  /** The validated configuration and its hash. */
  config: 'config.json',
  /** Append-only log of finished items (per-item predictions and measurements). */
  items: 'predictions.jsonl',
  /** Aggregated metrics. */
  metrics: 'metrics.json',
  /** Markdown report. */
  report: 'report.md',
  /** SVG plots. */
  plots: 'plots',
} as const;

/** A fresh run id: UTC timestamp plus the run name. */
export function newRunId(name: string, date = new Date()): string {
  return `${date.toISOString().replace(/[:.]/g, '-').replace(/Z$/, '')}-${name}`;
}

/** Read a run folder's stored config. @throws ConfigError when it is missing or unreadable. */
export function readStoredConfig(dir: string): StoredConfig {
  const file = join(dir, RUN_FILES.config);
  if (!existsSync(file)) throw new ConfigError([{ path: '', rule: 'runFolder', message: `${file} does not exist; not a kvfold run folder` }], 'resume');
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as StoredConfig;
  } catch (e) {
    throw new ConfigError([{ path: '', rule: 'runFolder', message: `${file} is not valid JSON: ${(e as Error).message}` }], 'resume');
  }
}

/**
 * The folder of one run. Finished items are appended to `predictions.jsonl` one line at a time, so an
 * interrupted run loses at most the item in progress; reopening the folder with the same config
 * continues where it stopped. A torn last line (the process died mid-write) is dropped on open.
 */
export class RunStore {
  /** Absolute path of the run folder. */
  readonly dir: string;
  /** Run id (the folder's name). */
  readonly id: string;
  /** Items found in the folder when it was opened. */
  readonly reused: number;
  private readonly items = new Map<string, ItemRecord>();

  private constructor(dir: string, id: string) {
    this.dir = dir;
    this.id = id;
    const file = join(dir, RUN_FILES.items);
    let reused = 0;
    if (existsSync(file)) {
      // Work on bytes: predictions may hold non-ASCII text, and truncation is by byte offset.
      const buf = readFileSync(file);
      let good = 0;
      for (let start = 0; start < buf.length; ) {
        const nl = buf.indexOf(0x0a, start);
        if (nl < 0) break; // no newline yet: a torn tail
        const line = buf.subarray(start, nl).toString('utf8');
        if (line.trim() !== '') {
          let rec: ItemRecord;
          try {
            rec = JSON.parse(line) as ItemRecord;
          } catch {
            break; // a corrupt line: keep what precedes it
          }
          if (!this.items.has(rec.key)) {
            this.items.set(rec.key, rec);
            reused++;
          }
        }
        start = nl + 1;
        good = start;
      }
      if (good < buf.length) truncateSync(file, good);
    }
    this.reused = reused;
  }

  /**
   * Open (create or resume) the run folder `dir` for `config`.
   * @throws ConfigError when the folder holds a run of another configuration.
   */
  static open(dir: string, config: BenchConfig): RunStore {
    const abs = resolve(dir);
    const configFile = join(abs, RUN_FILES.config);
    if (existsSync(configFile)) {
      const stored = readStoredConfig(abs);
      if (stored.hash !== config.hash) {
        throw new ConfigError(
          [{ path: '/bench', rule: 'resume', message: `run folder ${abs} holds a run of another configuration (hash ${stored.hash.slice(0, 12)} vs ${config.hash.slice(0, 12)}); resume it with its own config (kvfold bench --resume ${abs}) or start a new run` }],
          'resume',
        );
      }
    } else {
      mkdirSync(abs, { recursive: true });
      const stored: StoredConfig = { hash: config.hash, createdAt: new Date().toISOString(), document: config.document };
      writeFileSync(configFile, `${JSON.stringify(stored, null, 2)}\n`);
    }
    const id = abs.split(/[\\/]/).pop() ?? abs;
    return new RunStore(abs, id);
  }

  /** True when the item is finished. */
  has(key: string): boolean {
    return this.items.has(key);
  }

  /** A finished item. */
  get<D>(key: string): ItemRecord<D> | undefined {
    return this.items.get(key) as ItemRecord<D> | undefined;
  }

  /** Finished items (of one suite), in the order they finished. */
  records<D = unknown>(suite?: SuiteName): ItemRecord<D>[] {
    const all = [...this.items.values()] as ItemRecord<D>[];
    return suite ? all.filter((r) => r.suite === suite) : all;
  }

  /** Append a finished item (one line, written before this returns). A key already present is ignored. */
  append(record: ItemRecord): void {
    if (this.items.has(record.key)) return;
    appendFileSync(join(this.dir, RUN_FILES.items), `${JSON.stringify(record)}\n`);
    this.items.set(record.key, record);
  }

  /** Write a JSON file in the run folder. */
  writeJson(name: string, value: unknown): void {
    writeFileSync(join(this.dir, name), `${JSON.stringify(value, null, 2)}\n`);
  }

  /** Write a text file in the run folder (sub-folders are created). */
  writeText(name: string, text: string): void {
    const file = join(this.dir, name);
    mkdirSync(resolve(file, '..'), { recursive: true });
    writeFileSync(file, text);
  }
}
