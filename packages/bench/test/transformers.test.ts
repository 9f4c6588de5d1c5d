import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Progress, createKVFold, resolveBenchConfig, runBench, type BenchMetrics, type DecodeItem, type ItemRecord, type NeedleItem } from '../src/index.js';
import { tempDir } from './helpers/tiny-model.js';

describe('bench on the transformers.js runtime, next to tfjs', () => {
  it('runs needle and decode speed on both runtimes with the same prompts, and reports the rows side by side', async () => {
    const kv = await createKVFold();
    const doc = {
      seed: 0,
      bench: {
        name: 'runtimes',
        model: 'embedded',
        policies: ['full', 'h2o', 'kvmerger'],
        budgets: [0.5],
        runtimes: ['tfjs', 'transformers.js'],
        suites: {
          needle: { lengths: [256], depths: [0.25, 0.75], samples: 1, recall: null },
          speed: { throughput: null, scaling: null, decode: { prompt: 96, tokens: 4, rounds: 1 } },
        },
      },
    };
    const config = resolveBenchConfig(kv, doc);
    expect(config.variants.map((v) => v.id)).toEqual(['full@1', 'h2o@0.5', 'kvmerger@0.5', 'full@1@transformers.js', 'h2o@0.5@transformers.js', 'kvmerger@0.5@transformers.js']);
    const dir = join(tempDir(), 'run');
    const r = await runBench(kv, config, { dir, progress: new Progress('quiet'), command: 'test' });
    expect(r.done).toBe(r.total);
    const items = readFileSync(join(dir, 'predictions.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as ItemRecord);
    const needle = items.filter((i) => i.suite === 'needle');
    expect(needle).toHaveLength(12);
    // Same prompt, policy, budget and seed on both runtimes: the same greedy answer and the same kept slots.
    for (const i of needle.filter((x) => !x.variant!.endsWith('@transformers.js'))) {
      const twin = needle.find((x) => x.key === i.key.replace(i.variant!, `${i.variant}@transformers.js`))!;
      const [a, b] = [i.data as NeedleItem, twin.data as NeedleItem];
      expect(b.predicted).toBe(a.predicted);
      expect(b.keptSlots).toBe(a.keptSlots);
      expect(b.contextTokens).toBe(a.contextTokens);
    }
    const decode = items.filter((i) => i.suite === 'speed').map((i) => [i.variant!, i.data as DecodeItem] as const);
    expect(decode).toHaveLength(6);
    for (const [id, d] of decode) {
      expect(d.tokensPerSecond).toBeGreaterThan(0);
      const twin = decode.find(([x]) => x === `${id}@transformers.js`);
      if (twin) expect(twin[1].finalBytes).toBe(d.finalBytes);
    }
    const report = readFileSync(join(dir, 'report.md'), 'utf8');
    expect(report).toContain('| kvmerger (transformers.js) | 0.5 |');
    expect(report).toContain('Rows marked (transformers.js)');
    const metrics = JSON.parse(readFileSync(join(dir, 'metrics.json'), 'utf8')) as BenchMetrics;
    expect(metrics.summary.rows).toHaveLength(6);
  });

  it('rejects an unknown runtime by its JSON path', async () => {
    const kv = await createKVFold();
    expect(() => resolveBenchConfig(kv, { bench: { runtimes: ['pytorch'] } })).toThrow(/\/bench\/runtimes\/0/);
  });
});
