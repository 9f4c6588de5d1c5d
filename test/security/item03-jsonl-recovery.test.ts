// Issue 10, item 3: one corrupt line of predictions.jsonl never costs the valid records after it; bad
// lines are moved to predictions.rejected.jsonl with a warning that counts them.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RunStore, createKVFold, resolveBenchConfig, type ItemRecord } from '@kvfold/bench';
import { release, temp } from './helpers.js';

const rec = (key: string): ItemRecord => ({ key, suite: 'needle', variant: 'full@1', data: { v: key }, ms: 1, at: '2026-01-01T00:00:00.000Z' });

describe('item 3: predictions.jsonl recovery', () => {
  it('keeps every valid line around corrupt ones, moves the bad lines aside and warns with their count', async () => {
    const kv = await createKVFold();
    const config = resolveBenchConfig(kv, { bench: { budgets: [0.5] } });
    const dir = join(temp(), 'run');
    release(RunStore.open(dir, config));
    const good = Array.from({ length: 6 }, (_, i) => JSON.stringify(rec(`k${i}`)));
    const bad = ['{"key":"k9","suite":"nee', 'garbage \u0000', '{"no":"key"}'];
    const file = join(dir, 'predictions.jsonl');
    writeFileSync(file, [good[0], good[1], bad[0], good[2], good[3], bad[1], good[4], bad[2], good[5]].join('\n') + '\n');
    const warnings: string[] = [];
    const store = RunStore.open(dir, config, { warn: (m) => warnings.push(m) });
    release(store);
    expect(store.reused).toBe(6);
    expect(store.records().map((r) => r.key)).toEqual(['k0', 'k1', 'k2', 'k3', 'k4', 'k5']);
    expect(store.rejected).toBe(3);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^3 lines of .*predictions\.jsonl were not a valid record/);
    expect(readFileSync(join(dir, 'predictions.rejected.jsonl'), 'utf8')).toBe(bad.join('\n') + '\n');
    expect(readFileSync(file, 'utf8')).toBe(good.join('\n') + '\n');
  });
});
