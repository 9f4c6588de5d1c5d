import { describe, expect, it } from 'vitest';
import { runOnnxExample } from '@kvfold/example-onnx-backend';

describe('onnx-backend example', () => {
  it('runs KVMerger on ONNX Runtime (cpu EP), reports what runs, and matches the reference backend', async () => {
    const r = await runOnnxExample({ executionProvider: 'cpu', native: 'off', length: 128 });
    expect(r.info.executionProvider).toBe('cpu');
    expect(r.info.kernelPath).toBe('function-bodies');
    expect(r.onnx.describe).toMatch(/^onnx \(onnxruntime-node [\d.]+, cpu EP, ai\.kvfold function bodies/);
    expect(r.onnx.kept).toBe(45);
    expect(r.onnx.mergedSlots).toBeGreaterThan(0);
    expect(r.sameSlots).toBe(true);
    expect(r.maxDifference).toBeLessThan(1e-5);
  });
  it('says why when the requested CUDA provider cannot run, and runs on what it fell back to', async () => {
    const r = await runOnnxExample({ executionProvider: 'cuda', native: 'off', length: 64 });
    if (r.info.executionProvider === 'cpu') expect(r.info.fallbacks.join(' ')).toMatch(/CUDA/);
    expect(r.onnx.describe).toContain(`${r.info.executionProvider} EP`);
    expect(r.sameSlots).toBe(true);
    expect(r.maxDifference).toBeLessThan(1e-5);
  });
});
