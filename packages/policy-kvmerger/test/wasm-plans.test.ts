import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createRng, layerToHost, type HostLayer, type HostTensor, type KVKernels } from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { expectClose, recordingLogger } from '@kvfold/testkit';
import { KVMergerPolicy, type KVMergerOptions } from '../src/index.js';
import { context, hostLayer, upload, uniform } from './helpers.js';

// The reference backend's wasm kernels merge in float32 lanes (within 1e-5 of the TypeScript), but its
// adjacentCosine must stay bit-identical: KVMerger ranks links by those values, so any difference could
// change which slots merge. These cases check the plans end to end, with keys built to put cosines
// exactly on the paper threshold (0.75), at 1 (copies: ties broken by index) and at -1.
const wasm = createReferenceKernels();
const js = createReferenceKernels({ kernels: 'js' });

/** Row kinds: a random-walk step, a copy, a negation, a copy times 2^k, the axis e0, and (3, 1, ..., 1) whose cosine with e0 is 3/4 exactly. */
const KINDS = ['walk', 'copy', 'negate', 'scale', 'axis', 'threeQuarters'] as const;

/** Keys of `heads` x `length` rows of `dim` (>= 8) drawn from {@link KINDS}. */
function adversarialKeys(heads: number, length: number, dim: number, seed: number): Float32Array {
  const r = createRng(seed);
  const out = new Float32Array(heads * length * dim);
  for (let h = 0; h < heads; h++) {
    let prev = Float32Array.from({ length: dim }, () => r.next() * 2 - 1);
    for (let i = 0; i < length; i++) {
      const kind = KINDS[Math.floor(r.next() * KINDS.length)]!;
      const s = 2 ** Math.floor(r.next() * 4 - 2);
      const row = new Float32Array(dim);
      for (let d = 0; d < dim; d++) {
        if (kind === 'walk') row[d] = prev[d]! + 0.3 * (r.next() - 0.5);
        else if (kind === 'copy') row[d] = prev[d]!;
        else if (kind === 'negate') row[d] = -prev[d]!;
        else if (kind === 'scale') row[d] = prev[d]! * s;
        else if (kind === 'axis') row[d] = d === 0 ? s : 0;
        else row[d] = d === 0 ? 3 * s : d < 8 ? s : 0;
      }
      out.set(row, (h * length + i) * dim);
      prev = row;
    }
  }
  return out;
}

/** One prefill; the output layer and what the policy logged about its plan (merged, evicted, effective eps). */
async function prefill(k: KVKernels<HostTensor>, host: HostLayer, attention: Float32Array, budget: number, options: KVMergerOptions) {
  const logger = recordingLogger();
  const { layer, attention: att } = upload(k, host, attention);
  const out = await new KVMergerPolicy(options).prefill(layer, { attention: att }, context(k, budget, host.scores.shape[1]!, { logger }));
  const plans = logger.lines.filter((l) => l.message === 'kvmerger: compressed').map((l) => l.fields);
  return { out: await layerToHost(k, out), plans };
}

describe('kvmerger on the wasm reference makes the TypeScript reference plans', () => {
  it('the same merged links, pivots, counts and effective eps, with cosines placed at 0.75, 1 and -1', async () => {
    let merged = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          heads: fc.integer({ min: 1, max: 3 }),
          length: fc.integer({ min: 2, max: 40 }),
          dim: fc.constantFrom(8, 9, 16),
          seed: fc.integer({ min: 0, max: 0x7fffffff }),
          share: fc.double({ min: 0.2, max: 0.9, noNaN: true }),
          mode: fc.constantFrom<'exact' | 'paper'>('exact', 'paper'),
          sets: fc.constantFrom<'per-head' | 'shared'>('per-head', 'shared'),
          protect: fc.boolean(),
        }),
        async (c) => {
          const keys = adversarialKeys(c.heads, c.length, c.dim, c.seed);
          const values = uniform(c.seed + 1, keys.length);
          const attention = uniform(c.seed + 2, c.heads * c.length, 0, 1);
          const host = hostLayer({ heads: c.heads, length: c.length, headDim: c.dim, keys, values });
          const budget = Math.max(1, Math.floor(c.length * c.share));
          const options: KVMergerOptions = { mode: c.mode, eps: 0.75, sets: c.sets, ...(c.protect ? {} : { recent: 0, heavy: 0 }) };
          const a = await prefill(wasm, host, attention, budget, options);
          const e = await prefill(js, host, attention, budget, options);
          expect(a.plans).toEqual(e.plans);
          expect(Array.from(a.out.positions.data)).toEqual(Array.from(e.out.positions.data));
          expect(Array.from(a.out.counts.data)).toEqual(Array.from(e.out.counts.data));
          expectClose(a.out.keys, e.out.keys, 'keys');
          expectClose(a.out.values, e.out.values, 'values');
          expectClose(a.out.scores, e.out.scores, 'scores');
          for (const p of e.plans) merged += ((p?.['merged'] as number[] | undefined) ?? []).reduce((s, x) => s + x, 0);
        },
      ),
      { numRuns: 150 },
    );
    // The cases do merge (a property over identity plans would prove nothing).
    expect(merged).toBeGreaterThan(500);
  });
});

describe("kvmerger's segment plan on the backend (mergeSimilar, linkSegments) and on the host", () => {
  /** `k` with mergeSimilar and linkSegments calls counted, and the kernels in `hidden` reported as not implemented. */
  function variant(k: KVKernels<HostTensor>, hidden: readonly string[]): { kernels: KVKernels<HostTensor>; calls: () => { fused: number; walked: number }; dropped: () => number } {
    let fused = 0;
    let walked = 0;
    let dropped = 0;
    const kernels: KVKernels<HostTensor> = {
      ...k,
      mergeSimilar: (layer, plan) => {
        fused++;
        const r = k.mergeSimilar(layer, plan);
        if (Array.from(r.eligible.data).some((n) => n < plan.count)) dropped++;
        return r;
      },
      linkSegments: (links, scores) => (walked++, k.linkSegments(links, scores)),
      kernels: () => k.kernels().map((i) => (hidden.includes(i.name) ? { ...i, runs: 'reference' as const } : i)),
    };
    return { kernels, calls: () => ({ fused, walked }), dropped: () => dropped };
  }

  it('give the same layer bit for bit and the same logged plan on every path; each backend path runs whenever it applies', async () => {
    const fusedPath = variant(wasm, []);
    const walkPath = variant(wasm, ['mergeSimilar']);
    const hostPath = variant(wasm, ['mergeSimilar', 'linkSegments']);
    let cases = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          heads: fc.integer({ min: 1, max: 4 }),
          length: fc.integer({ min: 2, max: 60 }),
          seed: fc.integer({ min: 0, max: 0x7fffffff }),
          share: fc.double({ min: 0.1, max: 0.95, noNaN: true }),
          protect: fc.boolean(),
          minSimilarity: fc.constantFrom(-1, 0.5),
        }),
        async (c) => {
          const keys = adversarialKeys(c.heads, c.length, 8, c.seed);
          const host = hostLayer({ heads: c.heads, length: c.length, headDim: 8, keys, values: uniform(c.seed + 1, keys.length) });
          const attention = uniform(c.seed + 2, c.heads * c.length, 0, 1);
          const budget = Math.max(1, Math.floor(c.length * c.share));
          const options: KVMergerOptions = { minSimilarity: c.minSimilarity, ...(c.protect ? {} : { recent: 0, heavy: 0 }) };
          const a = await prefill(fusedPath.kernels, host, attention, budget, options);
          const w = await prefill(walkPath.kernels, host, attention, budget, options);
          const e = await prefill(hostPath.kernels, host, attention, budget, options);
          cases++;
          expect(a.plans).toEqual(e.plans);
          expect(w.plans).toEqual(e.plans);
          for (const f of ['keys', 'values', 'positions', 'counts', 'scores'] as const) {
            expect(Array.from(a.out[f].data), f).toEqual(Array.from(e.out[f].data));
            expect(Array.from(w.out[f].data), f).toEqual(Array.from(e.out[f].data));
          }
        },
      ),
      { numRuns: 150 },
    );
    expect(cases).toBe(150);
    expect(walkPath.calls().fused).toBe(0);
    expect(hostPath.calls()).toEqual({ fused: 0, walked: 0 });
    // Every path was exercised: the fused kernel in many cases (only where no head can fall short of eligible
    // links, so none was dropped), the backend walk and the host plan in the others.
    expect(fusedPath.calls().fused).toBeGreaterThan(40);
    expect(fusedPath.dropped()).toBe(0);
    expect(walkPath.calls().walked).toBeGreaterThan(40);
    expect(walkPath.calls().walked).toBeLessThan(150);
  });

  it('drops the fused result when a head is short of eligible links anyway (infinite keys), and plans on the host', async () => {
    const fusedPath = variant(wasm, []);
    const hostPath = variant(wasm, ['mergeSimilar', 'linkSegments']);
    const [heads, length, dim] = [2, 12, 8];
    const keys = uniform(5, heads * length * dim, -1, 1);
    // Head 1's rows 2, 5 and 8 start with +Infinity: the six links beside them have a NaN cosine (Infinity over
    // Infinity), which never merges, so five of its eleven links are eligible and a budget of 4 must merge 8.
    for (const row of [2, 5, 8]) keys[(length + row) * dim] = Number.POSITIVE_INFINITY;
    const host = hostLayer({ heads, length, headDim: dim, keys, values: uniform(6, keys.length) });
    const attention = uniform(7, heads * length, 0, 1);
    const options: KVMergerOptions = { recent: 0, heavy: 0 };
    const a = await prefill(fusedPath.kernels, host, attention, 4, options);
    const e = await prefill(hostPath.kernels, host, attention, 4, options);
    expect(fusedPath.calls().fused).toBe(1);
    expect(fusedPath.dropped()).toBe(1);
    expect(a.plans).toEqual(e.plans);
    expect(a.plans[0]!.merged).toEqual([8, 5]);
    expect(a.plans[0]!.evicted).toEqual([0, expect.any(Number)]);
    expect((a.plans[0]!.evicted as number[])[1]).toBeGreaterThan(0);
    for (const f of ['keys', 'values', 'positions', 'counts', 'scores'] as const) expect(Array.from(a.out[f].data), f).toEqual(Array.from(e.out[f].data));
  });
});
