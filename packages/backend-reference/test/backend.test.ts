import { describe, expect, it } from 'vitest';
import { KVFold, assertPlugin, hostTensor, silentLogger } from '@kvfold/core';
import plugin, { createReferenceKernels, referenceBackend } from '@kvfold/backend-reference';
import { f32 } from './util.js';

describe('reference backend', () => {
  it('identifies itself', () => {
    const k = createReferenceKernels();
    expect(k.backend).toBe('reference');
    expect(k.describe()).toBe('reference (plain TypeScript, Float32Array)');
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

  it('is a valid plugin whose backend creates the kernels', async () => {
    expect(assertPlugin(plugin, '@kvfold/backend-reference').backends.map((b) => b.name)).toEqual(['reference']);
    expect(referenceBackend.schema).toEqual({ type: 'object', additionalProperties: false, properties: {} });
    const b = await referenceBackend.create({}, { logger: silentLogger });
    expect(b.name).toBe('reference');
    expect(b.hostTensors).toBe(true);
  });

  it('registers with a KVFold instance, which binds it to the instance\'s kernel registry', async () => {
    const kv = KVFold.create({ plugins: [plugin] });
    expect(kv.backends.names()).toContain('reference');
    const k = await kv.backend('reference');
    expect(k.backend).toBe('reference');
    // Every defined kernel is listed, and on the reference backend every one is the reference itself.
    expect(k.kernels().map((i) => i.name).sort()).toEqual(kv.kernelRegistry.names());
    expect(new Set(k.kernels().map((i) => i.runs))).toEqual(new Set(['reference']));
  });
});
