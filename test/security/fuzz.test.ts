// The fuzz harness in its short CI form: 500 cases, every built-in policy, reference + tfjs + onnx (and
// the native onnx kernels when they are built). The full run (10,000 cases) is `kvfold fuzz --cases 10000`,
// recorded in bench/RESULTS.md.
import { describe, expect, it } from 'vitest';
import { defaultNativeDir, readManifest } from '@kvfold/backend-onnx';
import { createKVFold, fuzzSummary, runFuzz } from '@kvfold/bench';

describe('fuzz harness (short form)', () => {
  it('500 cases: no untyped error, no non-finite output from finite input, backends agree with the reference', async () => {
    const kv = await createKVFold();
    const backends = ['reference', 'tfjs', 'onnx', ...(readManifest(defaultNativeDir()) ? ['onnx-native'] : [])];
    const r = await runFuzz(kv, { cases: 500, seed: 1, backends });
    const summary = fuzzSummary(r);
    expect(r.backends.every((b) => b.runs !== undefined), summary).toBe(true);
    expect(r.untypedErrors, summary).toBe(0);
    expect(r.nonFiniteOutputs, summary).toBe(0);
    expect(r.decisionMismatches, summary).toBe(0);
    expect(r.keptSetMismatches, summary).toBe(0);
    expect(r.mutatedInputs, summary).toBe(0);
    expect(r.nondeterministic, summary).toBe(0);
    // The cases exercised both paths: caches returned and inputs refused, with several codes.
    expect(r.accepted).toBeGreaterThan(200);
    expect(Object.keys(r.refused).length).toBeGreaterThanOrEqual(5);
    expect(r.policies).toEqual(kv.policies.names());
    // Every policy, the ones that need queries (SnapKV, PyramidKV) or options (chain) included, returned caches.
    for (const [policy, n] of Object.entries(r.byPolicy)) expect(n.accepted, `${policy}: ${n.accepted} of ${n.cases} cases accepted\n${summary}`).toBeGreaterThan(0);
  });
});
