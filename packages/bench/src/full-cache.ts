import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { ConfigError } from '@kvfold/core';
import { evalTaskSample, MIX_TASKS, type MixTask } from '@kvfold/model-tiny';
import type { Model } from '@kvfold/runtime';
import { answerMatches } from './metrics.js';
import { PolicyRun, capture } from './model.js';
import { wilsonInterval, type ProportionInterval } from './stats.js';
import { breathe, splitTokens } from './suite.js';

/**
 * Where the question sits: `after-compression` prefills the context, then feeds the question (what a
 * query-agnostic policy would compress); `in-prompt` prefills context and question together (what a
 * query-aware policy would compress). With the full cache both must give the same answers; measuring
 * both checks the decode path against the prefill path.
 */
export type QuestionSetting = 'after-compression' | 'in-prompt';

/** One evaluated item (a line of the JSONL log). */
export interface FullCacheItem {
  /** Task name (see `MIX_TASKS` of @kvfold/model-tiny). */
  readonly task: MixTask;
  /** Prompt length in bytes (= tokens). */
  readonly length: number;
  /** Question placement. */
  readonly setting: QuestionSetting;
  /** Sample index in its cell. */
  readonly sample: number;
  /** Expected answer. */
  readonly expected: string;
  /** Greedy continuation (trimmed). */
  readonly predicted: string;
  /** Exact match. */
  readonly correct: boolean;
}

/** Accuracy of one (task, length, setting) cell. */
export interface FullCacheCell {
  /** Task name. */
  readonly task: MixTask;
  /** Prompt length. */
  readonly length: number;
  /** Question placement. */
  readonly setting: QuestionSetting;
  /** Accuracy with its 95% Wilson interval and n. */
  readonly accuracy: ProportionInterval;
}

/** Options of {@link fullCacheEval}. */
export interface FullCacheOptions {
  /** Tasks (default: all of `MIX_TASKS`). */
  readonly tasks?: readonly MixTask[];
  /** Prompt lengths (default 256, 512, 1024, 2048). */
  readonly lengths?: readonly number[];
  /** Items per cell (default 100). */
  readonly n?: number;
  /** Question placements (default both). */
  readonly settings?: readonly QuestionSetting[];
  /** Base seed of the samples (default 0). */
  readonly seed?: number;
  /** JSONL file: items already in it are not run again, new items are appended (resumable); items outside these options are kept but not counted. */
  readonly log?: string;
  /** Called after every item with the count done and the total. */
  readonly onProgress?: (done: number, total: number, item: FullCacheItem) => void;
}

const itemKey = (i: Pick<FullCacheItem, 'task' | 'length' | 'setting' | 'sample'>) => `${i.task}|${i.length}|${i.setting}|${i.sample}`;

function readLog(path: string | undefined): FullCacheItem[] {
  if (!path || !existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim().length > 0)
    .map((l) => JSON.parse(l) as FullCacheItem);
}

/**
 * Full-cache accuracy of a model on the generated tasks through the project's runtime (the same
 * capture + decode path the needle suite uses, with no policy): greedy exact match per item, grouped
 * into (task, length, setting) cells with 95% Wilson intervals.
 * @throws RangeError for an unknown task, n < 1, or a length too short for a task; ConfigError for a log
 *   written from other items (another seed or generator).
 */
export async function fullCacheEval(model: Model, options: FullCacheOptions = {}): Promise<FullCacheCell[]> {
  const tasks = options.tasks ?? MIX_TASKS;
  const lengths = options.lengths ?? [256, 512, 1024, 2048];
  const n = options.n ?? 100;
  const settings = options.settings ?? ['after-compression', 'in-prompt'];
  const seed = options.seed ?? 0;
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`n must be an integer >= 1, got ${n}`);
  for (const t of tasks) if (!(MIX_TASKS as readonly string[]).includes(t)) throw new RangeError(`unknown task ${JSON.stringify(t)}; allowed: ${MIX_TASKS.join(', ')}`);
  const inScope = (i: FullCacheItem) => tasks.includes(i.task) && lengths.includes(i.length) && settings.includes(i.setting) && i.sample < n;
  const items = readLog(options.log).filter(inScope);
  // A log from another generator (the items for a seed changed when model-tiny moved to core's RNG) must not
  // be resumed into this one: its answers would be counted for prompts that are no longer asked.
  for (const i of items) {
    const want = evalTaskSample(i.task, i.length, i.sample, seed).answer;
    if (i.expected !== want) {
      throw new ConfigError([{ path: '/log', rule: 'items', message: `${options.log} holds ${i.task} L=${i.length} #${i.sample} with answer ${JSON.stringify(i.expected)}, but seed ${seed} now generates ${JSON.stringify(want)}: the log was written from other items (another seed or generator); start a new log` }], 'full-cache log');
    }
  }
  const done = new Set(items.map(itemKey));
  const total = tasks.length * lengths.length * n * settings.length;
  const tok = model.tokenizer;
  for (const task of tasks) {
    for (const length of lengths) {
      for (let sample = 0; sample < n; sample++) {
        const todo = settings.filter((setting) => !done.has(itemKey({ task, length, setting, sample })));
        if (todo.length === 0) continue;
        await breathe();
        const s = evalTaskSample(task, length, sample, seed);
        const { context, rest } = splitTokens(tok, s.prompt, s.questionOffset);
        for (const setting of todo) {
          // in-prompt: one prefill of context + question; after-compression: prefill the context, then
          // feed the question through the decode path.
          const cap = await capture(model, setting === 'in-prompt' ? [...context, ...rest] : context);
          const run = await PolicyRun.start(model, cap, undefined, 1);
          try {
            const logits = setting === 'in-prompt' || rest.length === 0 ? cap.logits : await run.feed(rest);
            const want = s.answer.length;
            // A byte-level token is one character, other tokenizers' at least one: want + 2 tokens suffice.
            const out = await run.greedy(logits, want + 2, (t) => tok.decode(t).trimStart().length >= want);
            const predicted = tok.decode(out);
            const item: FullCacheItem = { task, length, setting, sample, expected: s.answer, predicted: predicted.trim(), correct: answerMatches(s.answer, predicted) };
            items.push(item);
            if (options.log) appendFileSync(options.log, `${JSON.stringify(item)}\n`);
            options.onProgress?.(items.length, total, item);
          } finally {
            run.dispose();
          }
        }
      }
    }
  }
  return summariseFullCache(items);
}

/** Group items into cells (in task, length, setting order of first appearance) with Wilson intervals. */
export function summariseFullCache(items: readonly FullCacheItem[]): FullCacheCell[] {
  const cells = new Map<string, { task: MixTask; length: number; setting: QuestionSetting; k: number; n: number }>();
  for (const i of items) {
    const key = `${i.task}|${i.length}|${i.setting}`;
    const c = cells.get(key) ?? { task: i.task, length: i.length, setting: i.setting, k: 0, n: 0 };
    c.n++;
    if (i.correct) c.k++;
    cells.set(key, c);
  }
  return [...cells.values()].map((c) => ({ task: c.task, length: c.length, setting: c.setting, accuracy: wilsonInterval(c.k, c.n) }));
}
