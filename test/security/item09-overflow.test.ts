// Issue 10, item 9: finite input never gives a non-finite output, and every backend decides like the
// reference. The float32 kernels scale before they square (adjacentCosine and keyNorms: each key by a power of two;
// mergeSegments: the key difference by sigma), onnx sums merged counts in float64 like the reference, and
// the guard refuses magnitudes of 2^64 or more (KVF_VALUE_RANGE) on every backend, so merged sums cannot
// overflow float32.
import { describe, expect, it } from 'vitest';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { createTfjsKernels } from '@kvfold/backend-tfjs';
import { createOnnxKernels, defaultNativeDir, readManifest } from '@kvfold/backend-onnx';
import { createKVFold } from '@kvfold/bench';
import { ErrorCode, createContext, createRng, hostLayer, hostTensor, layerFromHost, layerToHost, type HostLayer, type KVKernels } from '@kvfold/core';
import { caught } from './helpers.js';

const ref = createReferenceKernels();
const backends: [string, () => Promise<KVKernels<unknown>>][] = [
  ['tfjs', async () => (await createTfjsKernels({ engine: 'cpu' })) as KVKernels<unknown>],
  ['onnx', async () => createOnnxKernels({ native: 'off', threads: 1 }) as KVKernels<unknown>],
  ...(readManifest(defaultNativeDir()) ? ([['onnx-native', async () => createOnnxKernels({ native: 'require', threads: 1 }) as KVKernels<unknown>]] as [string, () => Promise<KVKernels<unknown>>][]) : []),
];

/** Keys of magnitude `scale`: pairs of near-parallel keys, so cosines are near 1 and merges happen. */
function layer(scale: number, H = 2, L = 6, D = 8, seed = 3): HostLayer {
  const r = createRng(seed);
  const keys = new Float32Array(H * L * D);
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < L; i++) {
      for (let d = 0; d < D; d++) {
        const base = Math.sin(h * 7 + Math.floor(i / 2) * 3 + d);
        keys[(h * L + i) * D + d] = scale * (base + 0.01 * (r.next() - 0.5));
      }
    }
  }
  const values = Float32Array.from({ length: H * L * D }, () => r.next() * 2 - 1);
  return hostLayer({ heads: H, length: L, headDim: D, keys, values });
}

describe('item 9: numeric overflow in kernels', () => {
  it('adjacentCosine of keys at 3e19 and at 1e-25 equals the reference on every backend', async () => {
    for (const scale of [3e19, 1e19, 1e-25, 1e-40]) {
      const host = layer(scale);
      const want = (await ref.toHost(ref.adjacentCosine(ref.fromHost(host.keys)))).data;
      expect(Math.max(...want)).toBeGreaterThan(0.99);
      for (const [name, make] of backends) {
        const k = await make();
        const got = (await k.toHost(k.adjacentCosine(k.fromHost(host.keys)))).data;
        for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!), `${name} at ${scale}, pair ${i}`).toBeLessThan(1e-5);
      }
    }
  });

  it('keyNorms (Knorm\'s score, added by the kernel registry) of keys at 3e19 and down to 1e-40 equals the reference on every backend', async () => {
    for (const scale of [3e19, 1e19, 1e-25, 1e-38, 1e-40]) {
      const host = layer(scale);
      const want = (await ref.toHost(ref.keyNorms(ref.fromHost(host.keys)))).data;
      expect(want.every((x) => Number.isFinite(x) && x > 0)).toBe(true);
      for (const [name, make] of backends) {
        const k = await make();
        const got = (await k.toHost(k.keyNorms(k.fromHost(host.keys)))).data;
        for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!) / want[i]!, `${name} at ${scale}, slot ${i}`).toBeLessThan(1e-5);
      }
    }
  });

  it('mergeSegments with keys at 1e20 and an RMS-sized sigma is finite and equals the reference on every backend', async () => {
    // Members about 1e20 apart: squared distances (about 1e41) and 2 sigma^2 overflow float32 when squared first.
    const r = createRng(9);
    const host = hostLayer({ heads: 1, length: 4, headDim: 8, keys: Array.from({ length: 32 }, () => (r.next() * 2 - 1) * 1e20), values: Array.from({ length: 32 }, () => r.next()) });
    const plan = { segment: hostTensor('int32', [1, 4], [0, 0, 1, 1]), pivot: hostTensor('int32', [1, 2], [0, 2]), sigma: hostTensor('float32', [1, 2], [2e20, 1.5e20]), valueScale: 'count' as const };
    const run = async (k: KVKernels<unknown>) => layerToHost(k, k.mergeSegments(layerFromHost(k, host), { ...plan, segment: k.fromHost(plan.segment), pivot: k.fromHost(plan.pivot), sigma: k.fromHost(plan.sigma) }));
    const want = await run(ref as KVKernels<unknown>);
    for (const [name, make] of backends) {
      const got = await run(await make());
      for (const f of ['keys', 'values'] as const) {
        for (let i = 0; i < want[f].data.length; i++) {
          expect(Number.isFinite(got[f].data[i]!), `${name} ${f}[${i}]`).toBe(true);
          expect(Math.abs(got[f].data[i]! - want[f].data[i]!) / (1e-30 + Math.abs(want[f].data[i]!)), `${name} ${f}[${i}]`).toBeLessThan(1e-4);
        }
      }
      expect(Array.from(got.counts.data)).toEqual(Array.from(want.counts.data));
    }
  });

  it('onnx sums merged counts exactly above 2^24, like the reference', async () => {
    const host = { ...layer(1, 1, 2, 2), counts: hostTensor('int32', [1, 2], [2 ** 25 + 1, 2 ** 24 + 1]) } as HostLayer;
    const plan = (k: KVKernels<unknown>) => ({ segment: k.fromHost(hostTensor('int32', [1, 2], [0, 0])), pivot: k.fromHost(hostTensor('int32', [1, 1], [0])), sigma: k.fromHost(hostTensor('float32', [1, 1], [1])), valueScale: 'count' as const });
    const k = createOnnxKernels({ native: 'off', threads: 1 }) as KVKernels<unknown>;
    const got = await layerToHost(k, k.mergeSegments(layerFromHost(k, host), plan(k)));
    expect(Array.from(got.counts.data)).toEqual([2 ** 25 + 2 ** 24 + 2]);
  });

  it('KVMerger keeps the reference\'s kept set with keys at 1e19, and every merging policy refuses values near 3e38 with KVF_VALUE_RANGE on every backend', async () => {
    const kv = await createKVFold();
    const host = layer(1e19, 2, 12, 8);
    const attention = hostTensor('float32', [2, 12], Array.from({ length: 24 }, (_, i) => ((i * 7) % 11) / 11));
    const prefill = async (k: KVKernels<unknown>, l: HostLayer, policy: string) => {
      const p = kv.policy(policy, policy === 'kvmerger' ? { recent: 2, heavy: 2 } : {});
      const out = await p.prefill(layerFromHost(k, l), { attention: k.fromHost(attention) }, createContext({ kernels: k, budget: 6, promptLength: 12, seed: 1 }));
      return layerToHost(k, out);
    };
    const want = await prefill(ref as KVKernels<unknown>, host, 'kvmerger');
    expect(Array.from(want.counts.data).some((c) => c > 1)).toBe(true);
    const huge = { ...host, values: hostTensor('float32', [2, 12, 8], Array.from({ length: 192 }, (_, i) => (i % 2 ? 3e38 : 3.3e38))) } as HostLayer;
    for (const [name, make] of [['reference', async () => ref as KVKernels<unknown>], ...backends] as const) {
      const k = await make();
      if (name !== 'reference') {
        const got = await prefill(k, host, 'kvmerger');
        expect(Array.from(got.positions.data), name).toEqual(Array.from(want.positions.data));
        expect(Array.from(got.counts.data), name).toEqual(Array.from(want.counts.data));
      }
      for (const policy of ['cam', 'kvmerger']) {
        const e = await caught(() => prefill(k, huge, policy));
        expect(e.code, `${name} ${policy}`).toBe(ErrorCode.ValueRange);
      }
    }
  });
});
