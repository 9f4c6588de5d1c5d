import { describe, expect, it } from 'vitest';
import { KVFold, assertPlugin, hostTensor, silentLogger } from '@kvfold/core';
import plugin, { WASM_KERNELS, createReferenceKernels, referenceBackend } from '@kvfold/backend-reference';
import { f32 } from './util.js';

describe('reference backend', () => {
  it('identifies itself', () => {
    const k = createReferenceKernels();
    expect(k.backend).toBe('reference');
    expect(k.describe()).toMatch(/^reference \(WebAssembly SIMD for accumulate, adjacentCosine, gather, mergeSegments, mergeIntoNeighbours, topK, linkSegments/);
    expect(createReferenceKernels({ kernels: 'js' }).describe()).toBe('reference (plain TypeScript, Float32Array)');
    expect(createReferenceKernels({ poolBytes: 0 }).describe()).toBe('reference (plain TypeScript, Float32Array; wasm kernels off with poolBytes 0)');
  });

  it('copies on fromHost and toHost', async () => {
    const k = createReferenceKernels();
    const host = hostTensor('float32', [1, 2], [1, 2]);
    const t = k.fromHost(host);
    host.data[0] = 99;
    expect(Array.from(t.data)).toEqual([1, 2]);
    const back = await k.toHost(t);
    back.data[1] = 99;
    expect(Array.from(t.data)).toEqual([1, 2]);
    expect(back.shape).toEqual([1, 2]);
    expect(k.shapeOf(t)).toEqual([1, 2]);
    expect(k.dtypeOf(k.fromHost(hostTensor('int32', [1], [3])))).toBe('int32');
  });

  it('dispose is harmless, twice or with undefined', () => {
    const k = createReferenceKernels();
    const t = f32([1], [1]);
    k.dispose(t, undefined);
    k.dispose(t);
    expect(Array.from(t.data)).toEqual([1]);
  });

  // The js mode's buffer pool; the wasm mode's heap reuse is checked in wasm.test.ts.
  it('reuses the buffer of a disposed tensor for the next output of its size, and refuses the disposed tensor', () => {
    const k = createReferenceKernels({ kernels: 'js' });
    const n = 32 * 1024; // 128 KiB: large enough to be pooled
    const a = k.fromHost(hostTensor('float32', [1, n], new Float32Array(n).fill(1)));
    const b = k.fromHost(hostTensor('float32', [1, n], new Float32Array(n).fill(2)));
    const buffer = a.data.buffer;
    k.dispose(a);
    expect(() => k.accumulate(a, b)).toThrow(/accumulate scores was disposed/);
    const sum = k.accumulate(b, b);
    expect(sum.data.buffer).toBe(buffer);
    expect(sum.data[0]).toBe(4);
    expect(sum.data[n - 1]).toBe(4);
    k.dispose(a); // twice: no second release
    const other = k.accumulate(b, b);
    expect(other.data.buffer).not.toBe(buffer);
  });

  it('keeps at most poolBytes for reuse, and none with poolBytes 0', () => {
    const n = 32 * 1024;
    const off = createReferenceKernels({ poolBytes: 0 });
    const a = off.fromHost(hostTensor('float32', [1, n], new Float32Array(n)));
    const buffer = a.data.buffer;
    off.dispose(a);
    expect(off.fromHost(hostTensor('float32', [1, n], new Float32Array(n))).data.buffer).not.toBe(buffer);
    const small = createReferenceKernels({ poolBytes: n * 4, kernels: 'js' });
    const x = small.fromHost(hostTensor('float32', [1, n], new Float32Array(n)));
    const y = small.fromHost(hostTensor('float32', [1, n], new Float32Array(n)));
    small.dispose(x, y); // y pushes x out: only the newest fits
    expect(small.fromHost(hostTensor('float32', [1, n], new Float32Array(n))).data.buffer).toBe(y.data.buffer);
    expect(small.fromHost(hostTensor('float32', [1, n], new Float32Array(n))).data.buffer).not.toBe(x.data.buffer);
  });

  it('is a valid plugin whose backend creates the kernels', async () => {
    expect(assertPlugin(plugin, '@kvfold/backend-reference').backends.map((b) => b.name)).toEqual(['reference']);
    expect(referenceBackend.schema).toMatchObject({ type: 'object', additionalProperties: false, properties: { poolBytes: { type: 'integer', minimum: 0 } } });
    const b = await referenceBackend.create({}, { logger: silentLogger });
    expect(b.name).toBe('reference');
    expect(b.hostTensors).toBe(true);
  });

  it('registers with a KVFold instance, which binds it to the instance\'s kernel registry', async () => {
    const kv = KVFold.create({ plugins: [plugin] });
    expect(kv.backends.names()).toContain('reference');
    const k = await kv.backend('reference');
    expect(k.backend).toBe('reference');
    // Every defined kernel is listed; the wasm ones run the backend's implementation, every other one the reference itself.
    expect(k.kernels().map((i) => i.name).sort()).toEqual(kv.kernelRegistry.names());
    const wasm = new Set<string>(WASM_KERNELS);
    for (const i of k.kernels()) expect([i.name, i.runs]).toEqual([i.name, wasm.has(i.name) ? 'backend' : 'reference']);
    const js = await kv.backend('reference', { kernels: 'js' });
    expect(new Set(js.kernels().map((i) => i.runs))).toEqual(new Set(['reference']));
  });
});
