import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { KVFold } from '@kvfold/core';
import { Progress, createKVFold, needleTaskOf, preset, resolveBenchConfig, runBench, type BenchMetrics, type ItemRecord, type NeedleItem, type NeedleMetrics } from '../src/index.js';
import { tempDir, tinyModelFolder } from './helpers/tiny-model.js';

let kv: KVFold;
let model: string;
beforeAll(async () => {
  kv = await createKVFold();
  model = await tinyModelFolder();
});

/** A needle sweep over the given fillers at one short length, full cache and KVMerger vs H2O at 50%. */
function doc(fillers: unknown[]): Record<string, unknown> {
  const d = preset('smoke') as { bench: Record<string, unknown> };
  d.bench = {
    ...d.bench,
    model,
    budgets: [0.5],
    policies: ['full', { name: 'h2o', label: 'h2o-prefill', options: { decode: 'keep' } }, { name: 'kvmerger', label: 'kvmerger' }],
    suites: { needle: { lengths: [160], depths: [0, 1], samples: 1, fillers, recall: null, compare: [{ a: 'kvmerger', b: 'h2o-prefill' }] } },
  };
  return d;
}

describe('the needle suite word-key task (filler "prose-words")', () => {
  it('maps each filler to its task', () => {
    expect((['grammar', 'prose', 'prose-words'] as const).map(needleTaskOf)).toEqual(['passkey', 'passkey-prose', 'word-needle']);
  });

  it('rejects an unknown filler, naming the allowed values', () => {
    expect(() => resolveBenchConfig(kv, doc(['words']))).toThrow(/\/bench\/suites\/needle\/fillers\/0.*grammar.*prose.*prose-words/s);
  });

  it('runs word-needle items whose key is three words, and reports them with intervals and the paired comparison', async () => {
    const dir = join(tempDir(), 'run');
    const r = await runBench(kv, resolveBenchConfig(kv, doc(['prose-words'])), { dir, progress: new Progress('quiet'), command: 'test' });
    expect(r.done).toBe(r.total);
    const items = readFileSync(join(dir, 'predictions.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as ItemRecord).data as NeedleItem);
    // 2 depths x 1 sample x 3 rows.
    expect(items).toHaveLength(6);
    for (const i of items) {
      expect(i.task).toBe('word-needle');
      expect(i.expected).toMatch(/^[a-z]{4,9} [a-z]{4,9} [a-z]{4,9}$/);
    }
    // The same prompt for every row of an item: one answer per depth.
    expect(new Set(items.map((i) => `${i.depth}|${i.expected}`)).size).toBe(2);
    const metrics = JSON.parse(readFileSync(join(dir, 'metrics.json'), 'utf8')) as BenchMetrics;
    const needle = metrics.suites.needle as NeedleMetrics;
    expect(needle.variants.map((v) => v.tasks.map((t) => `${t.task} n=${t.accuracy.n}`).join())).toEqual(['word-needle n=2', 'word-needle n=2', 'word-needle n=2']);
    // The heatmap shows the first filler's task: here word-needle, 2 depths at one length.
    expect(needle.variants[0]!.passkeyN).toBe(2);
    expect(needle.variants[0]!.cells.map((c) => `${c.length}x${c.column} n=${c.n}`)).toEqual(['160x0 n=1', '160x1 n=1']);
    expect(needle.comparisons.map((c) => `${c.a} vs ${c.b} ${c.task} n=${c.result.n}`)).toEqual(['kvmerger vs h2o-prefill word-needle n=2']);
    expect(metrics.summary.columns).toEqual(['word-needle']);
    const report = readFileSync(join(dir, 'report.md'), 'utf8');
    expect(report).toMatch(/\| kvmerger \| 0\.5 \| prefill only \| \d+ \| \d+\.0 \| \d+\.\d \| \d+% \[\d+-\d+%\] n=2 \|/);
    expect(report).toContain('### word-needle accuracy by length (rows) and depth (columns)');
  }, 120_000);
});
