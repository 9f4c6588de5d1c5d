import { describe, expect, it } from 'vitest';
import { hostLayer } from '@kvfold/core';
import { describeHead, formatTable, runQuickstart } from '@kvfold/example-quickstart';

describe('quickstart example', () => {
  it('compresses with every policy and reports sane numbers', async () => {
    const rows = await runQuickstart({ length: 128, budget: 0.5 });
    const names = rows.map((r) => r.policy);
    expect(names).toEqual(expect.arrayContaining(['full', 'window', 'random', 'h2o', 'cam', 'kvmerger']));
    const full = rows.find((r) => r.policy === 'full')!;
    expect(full.kept).toBe(128);
    expect(full.attentionError).toBe(0);
    for (const r of rows.filter((x) => x.policy !== 'full')) {
      expect(r.kept).toBe(64);
      expect(r.attentionError).toBeGreaterThan(0);
      expect(Number.isFinite(r.attentionError) && Number.isFinite(r.proportionalError)).toBe(true);
    }
    expect(rows.find((r) => r.policy === 'kvmerger')!.mergedSlots).toBeGreaterThan(0);
    // Evicting by accumulated attention must beat evicting at random on data whose attention is skewed.
    expect(rows.find((r) => r.policy === 'h2o')!.attentionError).toBeLessThan(rows.find((r) => r.policy === 'random')!.attentionError);
    expect(names).toContain('kvmerger valueScale=none');
    expect(formatTable(rows).split('\n')).toHaveLength(rows.length + 2);
    expect(full.head0).toBe('0-127');
    expect(rows.find((r) => r.policy === 'kvmerger')!.head0).toMatch(/\d+×\d+/);
    // H2O's recent window (half the budget, 32 slots) ends head 0 as one run reaching the last token.
    const tail = /(\d+)-127$/.exec(rows.find((r) => r.policy === 'h2o')!.head0);
    expect(Number(tail?.[1])).toBeLessThanOrEqual(96);
  });
  it('summarises a head as runs of positions and merged slots', () => {
    const layer = hostLayer({ heads: 2, length: 6, headDim: 1, keys: new Float32Array(12), values: new Float32Array(12),
      positions: [0, 1, 2, 5, 9, 10, /* head 1 */ 3, 4, 5, 6, 7, 8], counts: [1, 1, 1, 4, 1, 1, 1, 1, 1, 1, 1, 1] });
    expect(describeHead(layer, 0)).toBe('0-2 5×4 9-10');
    expect(describeHead(layer, 1)).toBe('3-8');
  });
});
