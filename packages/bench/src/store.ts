import { appendFileSync, closeSync, existsSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError, NotFoundError, RunLockedError, parseJson, writeFileAtomic } from '@kvfold/core';
import { SUITE_NAMES, type BenchConfig, type BenchDocument, type SuiteName } from './config.js';

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
  /** Lines of `predictions.jsonl` that were not valid records, moved aside when the folder was opened. */
  rejected: 'predictions.rejected.jsonl',
  /** Aggregated metrics. */
  metrics: 'metrics.json',
  /** Markdown report. */
  report: 'report.md',
  /** SVG plots. */
  plots: 'plots',
  /** Exclusive lock of the process working on the folder (pid, host, start time). */
  lock: '.lock',
} as const;

/** A fresh run id: UTC timestamp plus the run name. */
export function newRunId(name: string, date = new Date()): string {
  return `${date.toISOString().replace(/[:.]/g, '-').replace(/Z$/, '')}-${name}`;
}

/** Why a stored config.json cannot be used, or undefined when it is a stored config. */
function storedConfigProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'it is not a JSON object';
  const v = value as Partial<StoredConfig>;
  if (typeof v.hash !== 'string' || !/^[0-9a-f]{64}$/.test(v.hash)) return 'it has no "hash"';
  if (typeof v.document !== 'object' || v.document === null || Array.isArray(v.document)) return 'it has no "document"';
  return undefined;
}

/** Read config.json of a run folder: the config, or why it is damaged. */
function loadStoredConfig(file: string): { stored: StoredConfig } | { damage: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    return { damage: `it cannot be read (${(e as Error).message})` };
  }
  if (text.trim() === '') return { damage: 'it is empty' };
  let value: unknown;
  try {
    value = parseJson(text, file);
  } catch (e) {
    return { damage: (e as ConfigError).issues?.[0]?.message ?? (e as Error).message };
  }
  const problem = storedConfigProblem(value);
  return problem ? { damage: problem } : { stored: value as StoredConfig };
}

/** The config hash metrics.json recorded, when it is readable. */
function metricsHash(dir: string): string | undefined {
  try {
    const m = JSON.parse(readFileSync(join(dir, RUN_FILES.metrics), 'utf8')) as { configHash?: unknown };
    return typeof m.configHash === 'string' ? m.configHash : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Read a run folder's stored config.
 * @throws NotFoundError when the folder has no config.json; ConfigError when it is damaged, saying how to
 *   resume the folder with the config that made it.
 */
export function readStoredConfig(dir: string): StoredConfig {
  const file = join(dir, RUN_FILES.config);
  if (!existsSync(file)) throw new NotFoundError('run folder config', file, 'not a kvfold run folder (kvfold bench writes config.json first)');
  const r = loadStoredConfig(file);
  if ('stored' in r) return r.stored;
  const hash = metricsHash(dir);
  const id = resolve(dir).split(/[\\/]/).pop() ?? dir;
  throw new ConfigError(
    [
      {
        path: '',
        rule: 'runFolder',
        message:
          `${file} is damaged (${r.damage}), so --resume cannot read the run's config. Its measurements are intact: resume with the config ` +
          `that made the run, \`kvfold bench --config <that file> --out ${resolve(dir, '..')} --id ${id}\`; kvfold restores config.json from it` +
          (hash ? ` after checking it against the hash metrics.json recorded (${hash.slice(0, 12)})` : ''),
      },
    ],
    'resume',
  );
}

/** What a run folder's lock file records. */
export interface RunLockHolder {
  /** Process id of the holder. */
  readonly pid: number;
  /** Host name of the holder. */
  readonly host: string;
  /** When it took the lock (ISO). */
  readonly startedAt: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Locks this process holds, removed if it exits without closing them. */
const held = new Set<string>();
let exitHook = false;

/**
 * Take the exclusive lock of a run folder: `.lock` is created atomically (written in full to a temporary
 * file, then hard-linked into place, which fails if a lock exists) with this process's pid, host and time.
 * A lock whose holder is this host and no longer runs is stale and replaced.
 * @throws RunLockedError naming the holder.
 */
function acquireLock(dir: string): () => void {
  const file = join(dir, RUN_FILES.lock);
  const me: RunLockHolder = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString() };
  const tmp = join(dir, `.lock.${process.pid}.${Date.now()}.tmp`);
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, `${JSON.stringify(me)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(tmp, file);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 2) throw e;
      }
      let holder: Partial<RunLockHolder> = {};
      try {
        holder = JSON.parse(readFileSync(file, 'utf8')) as Partial<RunLockHolder>;
      } catch {
        // unreadable: treated as held by an unknown process
      }
      const pid = typeof holder.pid === 'number' ? holder.pid : -1;
      const host = typeof holder.host === 'string' ? holder.host : 'an unknown host';
      const stale = host === me.host && pid > 0 && pid !== process.pid && !alive(pid);
      if (!stale) throw new RunLockedError(dir, { pid, host, ...(typeof holder.startedAt === 'string' ? { startedAt: holder.startedAt } : {}) });
      try {
        unlinkSync(file);
      } catch {
        // another process replaced it first; the next attempt reads its lock
      }
    }
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // nothing to clean
    }
  }
  held.add(file);
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const f of held) {
        try {
          unlinkSync(f);
        } catch {
          // gone already
        }
      }
    });
  }
  return () => {
    if (!held.delete(file)) return;
    try {
      unlinkSync(file);
    } catch {
      // gone already
    }
  };
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Whether a parsed line is an item record. */
function isRecord(v: unknown): v is ItemRecord {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const r = v as Partial<ItemRecord>;
  return typeof r.key === 'string' && r.key.length > 0 && (SUITE_NAMES as readonly string[]).includes(r.suite as string) && 'data' in r;
}

/** Options of {@link RunStore.open}. */
export interface RunStoreOptions {
  /** Called with each warning (lines moved aside, config.json restored); default ignored. */
  readonly warn?: (message: string) => void;
}

/**
 * The folder of one run. Finished items are appended to `predictions.jsonl` one line at a time, so an
 * interrupted run loses at most the item in progress; reopening the folder with the same config
 * continues where it stopped. Only one process works on a folder at a time (its `.lock`).
 *
 * On open, every line of `predictions.jsonl` that is a valid record is kept; any other line (a torn tail
 * from a crash mid-write, a corrupted line anywhere) is appended to `predictions.rejected.jsonl` and the
 * main file is rewritten atomically without it, with a warning that counts them. Nothing measured is
 * ever deleted. config.json, metrics.json, report.md and plots are written atomically (temporary file,
 * fsync, rename).
 */
export class RunStore {
  /** Absolute path of the run folder. */
  readonly dir: string;
  /** Run id (the folder's name). */
  readonly id: string;
  /** Items found in the folder when it was opened. */
  readonly reused: number;
  /** Lines of predictions.jsonl moved to predictions.rejected.jsonl when the folder was opened. */
  readonly rejected: number;
  /** Warnings raised while opening (also passed to {@link RunStoreOptions.warn}). */
  readonly warnings: readonly string[];
  private readonly items = new Map<string, ItemRecord>();
  private readonly release: () => void;

  private constructor(dir: string, id: string, release: () => void, warnings: string[]) {
    this.dir = dir;
    this.id = id;
    this.release = release;
    const file = join(dir, RUN_FILES.items);
    let reused = 0;
    let rejected = 0;
    if (existsSync(file)) {
      // Work on bytes: predictions may hold non-ASCII text.
      const buf = readFileSync(file);
      const good: Buffer[] = [];
      const bad: Buffer[] = [];
      for (let start = 0; start < buf.length; ) {
        let nl = buf.indexOf(0x0a, start);
        if (nl < 0) nl = buf.length; // a last line without newline: a torn write, unless it parses
        const bytes = buf.subarray(start, nl);
        start = nl + 1;
        let rec: unknown;
        try {
          const line = UTF8.decode(bytes);
          if (line.trim() === '') continue;
          rec = JSON.parse(line);
        } catch {
          rec = undefined; // not UTF-8 or not JSON
        }
        if (!isRecord(rec)) {
          bad.push(bytes);
          continue;
        }
        good.push(bytes);
        if (!this.items.has(rec.key)) {
          this.items.set(rec.key, rec);
          reused++;
        }
      }
      const clean = good.length === 0 ? Buffer.alloc(0) : Buffer.concat(good.flatMap((g) => [g, Buffer.from('\n')]));
      if (bad.length > 0 || !clean.equals(buf)) {
        if (bad.length > 0) {
          // Moved aside first: a crash between the two writes duplicates a rejected line, never loses one.
          const out = openSync(join(dir, RUN_FILES.rejected), 'a');
          try {
            writeSync(out, Buffer.concat(bad.flatMap((b) => [b, Buffer.from('\n')])));
            fsyncSync(out);
          } finally {
            closeSync(out);
          }
          rejected = bad.length;
          warnings.push(`${rejected} line${rejected === 1 ? '' : 's'} of ${file} ${rejected === 1 ? 'was' : 'were'} not a valid record (a torn or corrupted write) and ${rejected === 1 ? 'was' : 'were'} moved to ${join(dir, RUN_FILES.rejected)}; the ${reused} valid items are kept and those items will be recomputed`);
        }
        writeFileAtomic(file, clean);
      }
    }
    this.reused = reused;
    this.rejected = rejected;
    this.warnings = warnings;
  }

  /**
   * Open (create or resume) the run folder `dir` for `config`, taking its lock (release it with
   * {@link RunStore.close}). A config.json that is damaged (empty, not JSON, not a stored config) or
   * missing from a folder that holds items is restored from `config`, after checking it against the
   * hash metrics.json recorded when there is one; the damaged file is kept as `config.json.damaged-<time>`.
   * @throws RunLockedError when another process holds the folder; ConfigError when the folder holds a
   *   run of another configuration.
   */
  static open(dir: string, config: BenchConfig, options: RunStoreOptions = {}): RunStore {
    const abs = resolve(dir);
    mkdirSync(abs, { recursive: true });
    const release = acquireLock(abs);
    const warnings: string[] = [];
    try {
      const configFile = join(abs, RUN_FILES.config);
      const fresh = (): void => {
        const stored: StoredConfig = { hash: config.hash, createdAt: new Date().toISOString(), document: config.document };
        writeFileAtomic(configFile, `${JSON.stringify(stored, null, 2)}\n`);
      };
      const mismatch = (hash: string, where: string): ConfigError =>
        new ConfigError(
          [{ path: '/bench', rule: 'resume', message: `run folder ${abs} holds a run of another configuration (hash ${hash.slice(0, 12)} in ${where} vs ${config.hash.slice(0, 12)}); resume it with its own config (kvfold bench --resume ${abs}) or start a new run` }],
          'resume',
        );
      if (existsSync(configFile)) {
        const r = loadStoredConfig(configFile);
        if ('stored' in r) {
          if (r.stored.hash !== config.hash) throw mismatch(r.stored.hash, 'config.json');
        } else {
          const recorded = metricsHash(abs);
          if (recorded !== undefined && recorded !== config.hash) throw mismatch(recorded, 'metrics.json (config.json is damaged)');
          const kept = `${configFile}.damaged-${newRunId('config')}`;
          renameSync(configFile, kept);
          fresh();
          warnings.push(`${configFile} was damaged (${r.damage}); restored it from the config passed now${recorded ? ', which matches the hash metrics.json recorded' : ' (no metrics.json to check it against)'}; the damaged file is kept as ${kept}`);
        }
      } else {
        const items = join(abs, RUN_FILES.items);
        if (existsSync(items) && readFileSync(items).length > 0) {
          const recorded = metricsHash(abs);
          if (recorded !== undefined && recorded !== config.hash) throw mismatch(recorded, 'metrics.json (config.json is missing)');
          warnings.push(`${configFile} was missing from a folder with measurements; restored it from the config passed now`);
        }
        fresh();
      }
      const id = abs.split(/[\\/]/).pop() ?? abs;
      const store = new RunStore(abs, id, release, warnings);
      for (const w of store.warnings) options.warn?.(w);
      return store;
    } catch (e) {
      release();
      throw e;
    }
  }

  /** Release the folder's lock. Safe to call twice; the store must not be written after it. */
  close(): void {
    this.release();
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

  /** Write a JSON file in the run folder, atomically. */
  writeJson(name: string, value: unknown): void {
    writeFileAtomic(join(this.dir, name), `${JSON.stringify(value, null, 2)}\n`);
  }

  /** Write a text file in the run folder (sub-folders are created), atomically. */
  writeText(name: string, text: string): void {
    const file = join(this.dir, name);
    mkdirSync(resolve(file, '..'), { recursive: true });
    writeFileAtomic(file, text);
  }
}
