// kvfold's own kernels inside the tfjs wasm engine (kernels: 'wasm'): they run as custom tfjs kernels (seen
// in tf.profile), give the reference backend's results bit for bit (the same wasm code and Math.exp, and
// core's radix topK), allocate exactly their outputs in the engine's heap, and accept tensors that live in
// another engine.
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { hostTensor, type KVKernels, type LayerCache } from '@kvfold/core';
import { createTfjsKernels, TFJS_WASM_KERNELS } from '../src/index.js';
import { bits, everyKernel, expectReferenceBits, kernelsFor, layerHost, randInt, randomLayer, randomSegmentPlan, ref, rng, upload } from './helpers.js';
import { uploadSegmentPlan } from '@kvfold/testkit';

/** Dispose every field of a layer. */
function free(k: KVKernels<tf.Tensor>, l: LayerCache<tf.Tensor>): void {
  k.dispose(l.keys, l.values, l.positions, l.counts, l.scores);
}

/** Run `f` under tf.profile; the names of the tfjs kernels it ran. */
async function kernelNames(f: () => Promise<unknown>): Promise<string[]> {
  const info = await tf.profile(async () => {
    await f();
  });
  return info.kernelNames;
}


describe("tfjs kernels: 'wasm' (kvfold's kernels in the wasm engine's heap)", () => {
  it('run as the custom tfjs kernels registered for the wasm backend; the tfjs mode runs none of them', async () => {
    const k = await kernelsFor('wasm');
    const t = await kernelsFor('wasm(kernels=tfjs)');
    expect(k.kernelMode).toBe('wasm');
    expect(t.kernelMode).toBe('tfjs');
    const base = randomLayer(2, 12, 8, rng(1));
    const custom = ['KvfoldTopK', 'KvfoldGather', 'KvfoldAdjacentCosine', 'KvfoldMergeSegments', 'KvfoldMergeIntoNeighbours', 'KvfoldLinkSegments', 'KvfoldMergeSimilar'];
    for (const name of custom) expect(tf.getKernel(name, 'wasm')).toBeDefined();
    expect(custom.length).toBe(TFJS_WASM_KERNELS.length);
    const ran = await kernelNames(() => everyKernel(k, base, rng(2)));
    const ranTfjs = await kernelNames(() => everyKernel(t, base, rng(2)));
    expect(ran).toEqual(expect.arrayContaining(custom));
    expect(ranTfjs.filter((n) => n.startsWith('Kvfold'))).toEqual([]);
  });

  it('give the reference backend results bit for bit on random shapes and plans', async () => {
    await expectReferenceBits(await kernelsFor('wasm'), 1, 4, 60);
  });

  it('allocate exactly their outputs: no copy of the layer in or out', async () => {
    const k = await createTfjsKernels({ engine: 'wasm' });
    const [H, L, D, n] = [4, 256, 64, 100];
    const r = rng(3);
    const layer = upload(k, randomLayer(H, L, D, r));
    const index = k.fromHost(hostTensor('int32', [H, n], Array.from({ length: H * n }, () => randInt(r, 0, L - 1))));
    const sp = randomSegmentPlan(H, L, r, 0.2, 4);
    const plan = uploadSegmentPlan(k, sp, 'count');
    const M = sp.pivot.shape[1]!;
    const layerBytes = (slots: number): number => H * slots * (2 * D + 3) * 4;
    let out: LayerCache<tf.Tensor> | undefined;
    expect(await k.peakBytesOf(async () => void (out = k.gather(layer, index)))).toBe(layerBytes(n));
    free(k, out!);
    expect(await k.peakBytesOf(async () => void (out = k.mergeSegments(layer, plan)))).toBe(layerBytes(M));
    free(k, out!);
    free(k, layer);
    k.dispose(index, plan.segment, plan.pivot, plan.sigma);
  });

  it('take tensors of another engine (tfjs moves them into the wasm heap first)', async () => {
    const cpu = await createTfjsKernels({ engine: 'cpu' });
    const k = await kernelsFor('wasm');
    const base = randomLayer(2, 16, 8, rng(5));
    const onCpu = upload(cpu, base);
    const index = cpu.fromHost(hostTensor('int32', [2, 3], [0, 5, 15, 1, 1, 2]));
    const gathered = k.gather(onCpu, index);
    const cosine = k.adjacentCosine(onCpu.keys);
    expect(bits(await layerHost(k, gathered))).toEqual(bits(ref.gather(upload(ref, base), ref.fromHost(hostTensor('int32', [2, 3], [0, 5, 15, 1, 1, 2])))));
    expect(bits(await k.toHost(cosine))).toEqual(bits(ref.adjacentCosine(ref.fromHost(base.keys))));
    free(k, gathered);
    free(cpu, onCpu);
    k.dispose(cosine, index);
    // linkSegments on links and scores of the cpu engine: checked on the host, run in the wasm heap.
    const links = hostTensor('int32', [2, 3], [0, 1, 7, 2, 3, 14]);
    const cpuLinks = cpu.fromHost(links);
    const cpuScores = cpu.fromHost(base.scores);
    const linked = k.linkSegments(cpuLinks, cpuScores);
    const want = ref.linkSegments(ref.fromHost(links), ref.fromHost(base.scores));
    expect(bits(await k.toHost(linked.segment))).toEqual(bits(want.segment));
    expect(bits(await k.toHost(linked.pivot))).toEqual(bits(want.pivot));
    const unordered = cpu.fromHost(hostTensor('int32', [2, 3], [0, 1, 7, 3, 2, 14]));
    expect(() => k.linkSegments(unordered, cpuScores)).toThrow(/linkSegments links\[1, 1\] = 2: each head's links must be strictly ascending within \[0, 14\]/);
    k.dispose(linked.segment, linked.pivot);
    cpu.dispose(cpuLinks, cpuScores, unordered);
  });
});
