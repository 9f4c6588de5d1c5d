import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { KVFold } from '@kvfold/core';
import { Progress, createKVFold, preset, resolveBenchConfig, runBench, type BenchMetrics, type FidelityMetrics, type ItemRecord, type NeedleItem, type ProgressEvent } from '../src/index.js';
import { tempDir, tinyModelFolder } from './helpers/tiny-model.js';

let kv: KVFold;
let model: string;
beforeAll(async () => {
  kv = await createKVFold();
  model = await tinyModelFolder();
});

const quiet = () => new Progress('quiet');

function smoke(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const doc = preset('smoke') as { bench: Record<string, unknown> };
  doc.bench = { ...doc.bench, model, ...overrides };
  return doc;
}

function lines(dir: string): ItemRecord[] {
  return readFileSync(join(dir, 'predictions.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as ItemRecord);
}

describe('a tiny end-to-end run (random model folder, every suite)', () => {
  it('writes config, metrics, predictions, a report with every table, and SVG plots', async () => {
    const dir = join(tempDir(), 'run');
    const config = resolveBenchConfig(kv, smoke());
    const r = await runBench(kv, config, { dir, progress: quiet(), command: 'test' });
    expect(r.interrupted).toBe(false);
    expect(r.done).toBe(r.total);
    expect(r.computed).toBe(r.total);
    for (const f of ['config.json', 'metrics.json', 'predictions.jsonl', 'report.md']) expect(existsSync(join(dir, f))).toBe(true);
    const items = lines(dir);
    expect(items).toHaveLength(r.total);
    expect(new Set(items.map((i) => i.key)).size).toBe(r.total);

    const report = readFileSync(join(dir, 'report.md'), 'utf8');
    for (const h of ['## Summary', '## Needle', '## Fidelity', '## Perplexity', '## Speed and memory', '### Compression throughput', '### Decode speed', '### Compression time against context length']) expect(report).toContain(h);
    const plots = readdirSync(join(dir, 'plots')).sort();
    expect(plots).toEqual(['accuracy-vs-budget.svg', 'compression-time-vs-length.svg', 'fidelity-per-layer.svg', 'needle-heatmaps.svg', 'perplexity-vs-budget.svg', 'throughput-floor.svg', 'throughput-vs-length.svg']);
    for (const p of plots) expect(readFileSync(join(dir, 'plots', p), 'utf8').startsWith('<svg')).toBe(true);

    const metrics = JSON.parse(readFileSync(join(dir, 'metrics.json'), 'utf8')) as BenchMetrics;
    expect(metrics.run.complete).toBe(true);
    expect(metrics.summary.rows.map((row) => row.variant)).toEqual(config.variants.map((v) => v.id));
    expect(metrics.summary.columns).toEqual(['passkey', 'recall', 'attn error', 'perplexity', 'decode tok/s', 'cache bytes']);

    // Known scores: the full cache reproduces itself exactly; compression to 50% keeps half the slots.
    const fid = metrics.suites.fidelity as FidelityMetrics;
    const full = fid.variants.find((v) => v.variant.policy === 'full')!;
    expect(full.perLayer).toEqual([0, 0]);
    for (const v of fid.variants.filter((x) => x.variant.policy !== 'full')) for (const e of v.perLayer) expect(e).toBeGreaterThanOrEqual(0);
    for (const i of items.filter((x) => x.suite === 'needle')) {
      const n = i.data as NeedleItem;
      expect(n.correct).toBe(n.predicted.startsWith(n.expected));
      expect(n.keptSlots).toBe(i.variant === 'full@1' ? n.contextTokens : Math.round(n.contextTokens * 0.5));
    }
    // The decode rows: compressed caches end smaller than the full cache.
    const decode = items.filter((i) => i.key.startsWith('speed|decode'));
    const fullBytes = (decode.find((i) => i.variant === 'full@1')!.data as { finalBytes: number }).finalBytes;
    for (const d of decode.filter((i) => i.variant !== 'full@1')) expect((d.data as { finalBytes: number }).finalBytes).toBeLessThan(fullBytes);
  });

  it('an interrupted run resumes where it stopped: no finished item lost or recomputed, same results as an uninterrupted run', async () => {
    const doc = smoke({ suites: (preset('smoke') as { bench: { suites: Record<string, unknown> } }).bench.suites });
    delete (doc.bench as { suites: Record<string, unknown> }).suites.speed; // timings differ run to run; the rest is deterministic
    const config = resolveBenchConfig(kv, doc);
    const dir = join(tempDir(), 'run');
    const controller = new AbortController();
    let seen = 0;
    const events: ProgressEvent[] = [];
    const progress = new Progress('jsonl', {
      stderr: { write: () => true },
      stdout: {
        write: (s: string) => {
          for (const l of s.trim().split('\n')) {
            const e = JSON.parse(l) as ProgressEvent;
            events.push(e);
            if (e.type === 'item' && ++seen === 7) controller.abort();
          }
          return true;
        },
      },
    });
    const first = await runBench(kv, config, { dir, progress, signal: controller.signal });
    expect(first.interrupted).toBe(true);
    expect(first.done).toBe(7);
    expect(lines(dir)).toHaveLength(7);
    expect(JSON.parse(readFileSync(join(dir, 'metrics.json'), 'utf8')).run.complete).toBe(false);
    expect(readFileSync(join(dir, 'report.md'), 'utf8')).toContain('INCOMPLETE');
    const before = lines(dir);

    const second = await runBench(kv, config, { dir, progress: quiet() });
    expect(second.reused).toBe(7);
    expect(second.computed).toBe(second.total - 7);
    expect(second.done).toBe(second.total);
    const after = lines(dir);
    expect(after).toHaveLength(second.total);
    expect(after.slice(0, 7)).toEqual(before);
    expect(new Set(after.map((i) => i.key)).size).toBe(second.total);

    const freshDir = join(tempDir(), 'run');
    await runBench(kv, config, { dir: freshDir, progress: quiet() });
    const report = readFileSync(join(dir, 'report.md'), 'utf8');
    expect(report).toContain('over 2 sessions');
    expect(report).not.toContain('INCOMPLETE');
    const fresh = new Map(lines(freshDir).map((i) => [i.key, i.data]));
    for (const i of after) expect(i.data).toEqual(fresh.get(i.key));
  });
});
