import { describe, expect, it } from 'vitest';
import { formatTable, runQuickstart } from '@kvfold/example-quickstart';

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
  });
});
