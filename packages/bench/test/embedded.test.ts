import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { modelTinyPath } from '@kvfold/model-tiny';
import { Progress, createKVFold, preset, resolveBenchConfig, runBench, type FidelityMetrics, type NeedleMetrics } from '../src/index.js';
import { tempDir } from './helpers/tiny-model.js';

// The embedded model is retrained while the project runs: this checks that the bench runs on whatever
// weights exist, never how accurate they are.
describe.skipIf(!existsSync(join(modelTinyPath, 'model.safetensors')))('smoke run on the embedded model', () => {
  it('needle and fidelity produce one scored item per variant and an exact zero error for the full cache', async () => {
    const kv = await createKVFold();
    const doc = preset('smoke') as { bench: { suites: Record<string, unknown> } };
    doc.bench.suites = { needle: doc.bench.suites.needle, fidelity: doc.bench.suites.fidelity };
    const config = resolveBenchConfig(kv, doc);
    const r = await runBench(kv, config, { dir: join(tempDir(), 'run'), progress: new Progress('quiet') });
    expect(r.done).toBe(r.total);
    expect(r.metrics.model?.source).toBe('embedded');
    const needle = r.metrics.suites.needle as NeedleMetrics;
    for (const v of needle.variants) {
      expect(v.passkeyN).toBe(1);
      expect(v.passkey === 0 || v.passkey === 1).toBe(true);
    }
    const fid = r.metrics.suites.fidelity as FidelityMetrics;
    expect(fid.variants.find((v) => v.variant.policy === 'full')!.mean).toBe(0);
    for (const v of fid.variants) expect(Number.isFinite(v.mean)).toBe(true);
  });
});
