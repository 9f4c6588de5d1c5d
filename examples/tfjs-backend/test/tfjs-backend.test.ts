import { describe, expect, it } from 'vitest';
import { runTfjsExample } from '@kvfold/example-tfjs-backend';

describe('tfjs-backend example', () => {
  it('runs KVMerger on tfjs, reports the engine, and matches the reference backend', async () => {
    const r = await runTfjsExample({ engine: 'auto', length: 128 });
    expect(['wasm', 'cpu', 'tensorflow']).toContain(r.engine);
    expect(r.tfjs.describe).toContain(r.engine);
    expect(r.reference.describe).toMatch(/reference/);
    expect(r.tfjs.kept).toBe(45);
    expect(r.tfjs.mergedSlots).toBeGreaterThan(0);
    expect(r.sameSlots).toBe(true);
    expect(r.maxDifference).toBeLessThan(1e-5);
  });
  it('runs on the engine it is asked for', async () => {
    const r = await runTfjsExample({ engine: 'cpu', length: 64 });
    expect(r.engine).toBe('cpu');
    expect(r.simd).toBeUndefined();
    expect(r.sameSlots).toBe(true);
    expect(r.maxDifference).toBeLessThan(1e-5);
  });
});
