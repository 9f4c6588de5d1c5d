import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { KVFold } from '@kvfold/core';
import { Progress, createKVFold, decodeSetting, preset, resolveBenchConfig, runBench, type BenchMetrics, type ItemRecord, type NeedleItem, type NeedleMetrics, type PerplexityItem } from '../src/index.js';
import { tempDir, tinyModelFolder } from './helpers/tiny-model.js';

let kv: KVFold;
let model: string;
beforeAll(async () => {
  kv = await createKVFold();
  model = await tinyModelFolder();
});

/** A needle-only sweep in both decode settings, on grammar and prose filler, with one paired comparison. */
function equalBudgetDoc(compare: { a: string; b: string }[] = [{ a: 'kvmerger', b: 'h2o-prefill' }]): Record<string, unknown> {
  const doc = preset('smoke') as { bench: Record<string, unknown> };
  doc.bench = {
    ...doc.bench,
    model,
    budgets: [0.5],
    policies: [
      'full',
      { name: 'h2o', label: 'h2o', options: { decode: 'evict' } },
      { name: 'h2o', label: 'h2o-prefill', options: { decode: 'keep' } },
      { name: 'kvmerger', label: 'kvmerger-held', options: { decodeInterval: 1 } },
      { name: 'kvmerger', label: 'kvmerger' },
      { name: 'kvmerger', label: 'kvmerger-proportional', options: { valueScale: 'none' }, proportional: true },
    ],
    suites: { needle: { lengths: [160], depths: [0.5], samples: 2, fillers: ['grammar', 'prose'], recall: null, compare } },
  };
  return doc;
}

describe('equal final budgets in the needle suite', () => {
  it('resolves proportional attention per row: a spec overrides the section, others inherit it', () => {
    const config = resolveBenchConfig(kv, equalBudgetDoc());
    const prop = (label: string) => config.variants.find((v) => v.label === label)!.proportional;
    expect(prop('kvmerger-proportional')).toBe(true);
    expect(prop('kvmerger')).toBe(false);
    expect(prop('h2o')).toBe(false);
    expect(config.variants.map((v) => `${v.label}: ${decodeSetting(v)}`)).toEqual([
      'full: –',
      'h2o: held',
      'h2o-prefill: prefill only',
      'kvmerger-held: held (re-merge)',
      'kvmerger: prefill only',
      'kvmerger-proportional: prefill only',
    ]);
  });

  it('rejects a comparison that names a label outside the sweep, with its JSON path', () => {
    expect(() => resolveBenchConfig(kv, equalBudgetDoc([{ a: 'kvmerger', b: 'tova' }]))).toThrow(/\/bench\/suites\/needle\/compare\/0\/b: must be a policy label of the sweep/);
  });

  it('records the slots each item ends with, reports Wilson intervals and the paired comparison', async () => {
    const dir = join(tempDir(), 'run');
    const config = resolveBenchConfig(kv, equalBudgetDoc());
    const r = await runBench(kv, config, { dir, progress: new Progress('quiet'), command: 'test' });
    expect(r.done).toBe(r.total);
    const records = readFileSync(join(dir, 'predictions.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as ItemRecord);
    // 2 fillers x 2 samples per row; 6 rows.
    expect(records).toHaveLength(24);
    const byItem = new Map<string, Map<string, NeedleItem>>();
    for (const rec of records) {
      const d = rec.data as NeedleItem;
      const k = `${d.task}|${d.sample}`;
      byItem.set(k, (byItem.get(k) ?? new Map<string, NeedleItem>()).set(rec.variant!.split('@')[0]!, d));
    }
    expect([...byItem.keys()].sort()).toEqual(['passkey-prose|0', 'passkey-prose|1', 'passkey|0', 'passkey|1']);
    for (const rows of byItem.values()) {
      const full = rows.get('full')!;
      const budget = Math.round(full.contextTokens * 0.5);
      // Held rows end at the budget (KVMerger re-merges once the cache is 2 slots over it).
      expect(rows.get('h2o')!.finalSlots).toBe(budget);
      expect(rows.get('kvmerger-held')!.finalSlots).toBeLessThanOrEqual(budget + 1);
      // Prefill-only rows keep every token fed after the compression: the question plus the answer tokens
      // decoded before the last one (at most answer + 2 tokens are generated).
      for (const label of ['h2o-prefill', 'kvmerger', 'kvmerger-proportional']) {
        const it = rows.get(label)!;
        expect(it.keptSlots).toBe(budget);
        expect(it.finalSlots!).toBeGreaterThanOrEqual(budget + it.questionTokens);
        expect(it.finalSlots!).toBeLessThanOrEqual(budget + it.questionTokens + it.expected.length + 2);
      }
      // The full cache keeps everything it was fed.
      expect(full.finalSlots!).toBeGreaterThanOrEqual(full.contextTokens + full.questionTokens);
    }
    const metrics = JSON.parse(readFileSync(join(dir, 'metrics.json'), 'utf8')) as BenchMetrics;
    const needle = metrics.suites.needle as NeedleMetrics;
    const row = needle.variants.find((v) => v.variant.label === 'kvmerger')!;
    expect(row.tasks.map((t) => `${t.task} n=${t.accuracy.n}`)).toEqual(['passkey n=2', 'passkey-prose n=2']);
    expect(needle.comparisons.map((c) => `${c.a} vs ${c.b} @${c.budget} ${c.task} n=${c.result.n}`)).toEqual(['kvmerger vs h2o-prefill @0.5 passkey n=2', 'kvmerger vs h2o-prefill @0.5 passkey-prose n=2']);
    const report = readFileSync(join(dir, 'report.md'), 'utf8');
    expect(report).toContain('### Paired comparisons (same items)');
    expect(report).toMatch(/\| kvmerger \| 0\.5 \| prefill only \| \d+ \| \d+\.0 \| \d+\.\d \| \d+% \[\d+-\d+%\] n=2 \| \d+% \[\d+-\d+%\] n=2 \|/);
    expect(metrics.summary.columns).toEqual(['passkey', 'passkey-prose']);
  }, 120_000);

  it('states the final slots of every perplexity and fidelity row', async () => {
    const dir = join(tempDir(), 'run');
    const doc = equalBudgetDoc();
    const suites = { perplexity: { context: 32, continuation: 16, samples: 1, chunk: 8 }, fidelity: { contexts: [48], probes: 8, samples: 1, backend: 'reference' } };
    doc.bench = { ...(doc.bench as Record<string, unknown>), suites };
    const r = await runBench(kv, resolveBenchConfig(kv, doc), { dir, progress: new Progress('quiet'), command: 'test' });
    expect(r.done).toBe(r.total);
    const perplexity = new Map<string, PerplexityItem>();
    for (const l of readFileSync(join(dir, 'predictions.jsonl'), 'utf8').trim().split('\n')) {
      const rec = JSON.parse(l) as ItemRecord;
      if (rec.key.startsWith('perplexity|')) perplexity.set(rec.variant!.split('@')[0]!, rec.data as PerplexityItem);
    }
    // 15 of the 16 scored tokens are fed through the cache (the first is scored from the prefill's logits).
    expect(perplexity.get('full')!.finalSlots).toBe(32 + 15);
    expect(perplexity.get('h2o')!.finalSlots).toBe(16);
    expect(perplexity.get('kvmerger-held')!.finalSlots).toBeLessThanOrEqual(17);
    for (const label of ['h2o-prefill', 'kvmerger', 'kvmerger-proportional']) {
      expect(perplexity.get(label)!.keptSlots).toBe(16);
      expect(perplexity.get(label)!.finalSlots).toBe(16 + 15);
    }
    const report = readFileSync(join(dir, 'report.md'), 'utf8');
    expect(report).toContain('| policy | budget | decode | slots after prefill | final slots | perplexity | vs full | tokens |');
    expect(report).toMatch(/\| h2o \| 0\.5 \| held \| 16\.0 \| 16\.0 \| \d+\.\d{3} \|/);
    expect(report).toMatch(/\| h2o-prefill \| 0\.5 \| prefill only \| 16\.0 \| 31\.0 \| \d+\.\d{3} \|/);
    // Fidelity probes do not extend the cache: every row of the budget states the 24 slots it compressed to.
    expect(report).toMatch(/\| layer 0 \|.*\| final slots \| merged slots \| n \|/);
    for (const label of ['h2o', 'kvmerger']) expect(report).toMatch(new RegExp(`\\| ${label} \\| 0\\.5 \\|(?: [^|]+ \\|)+ 24\\.0 \\| \\d+% \\| 1 \\|`));
    expect(report).toMatch(/\| full \| 1 \|(?: [^|]+ \|)+ 48\.0 \| 0% \| 1 \|/);
  }, 120_000);
});
