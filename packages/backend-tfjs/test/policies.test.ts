// H2O, CaM, KVMerger and the window baseline end to end through KVFold: the same prompt, prefill and
// decode steps on the tfjs backend and on the reference backend, compared after every policy call.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as tf from '@tensorflow/tfjs-core';
import {
  KVFold,
  createContext,
  disposeLayer,
  hostTensor,
  layerFromHost,
  layerToHost,
  type HostLayer,
  type HostTensor,
  type KVKernels,
  type LayerCache,
  type NeighbourMergePlan,
  type SegmentPlan,
} from '@kvfold/core';
import reference from '@kvfold/backend-reference';
import baselines from '@kvfold/policy-baselines';
import h2o from '@kvfold/policy-h2o';
import cam from '@kvfold/policy-cam';
import kvmerger from '@kvfold/policy-kvmerger';
import { syntheticLayer } from '@kvfold/testkit';
import tfjs from '../src/index.js';
import { ENGINES, expectLayerClose, optionsFor, type EngineCase } from './helpers.js';

const kv = KVFold.create({ plugins: [reference, tfjs, baselines, h2o, cam, kvmerger] });

/** Policies and option sets run end to end. */
const POLICIES: readonly { readonly name: string; readonly options: Record<string, unknown> }[] = [
  { name: 'h2o', options: {} },
  { name: 'h2o', options: { recent: 0.25, normalize: true } },
  { name: 'cam', options: {} },
  { name: 'cam', options: { evict: 'window', gate: 'expected', mergeBudget: 4 } },
  { name: 'kvmerger', options: {} },
  { name: 'kvmerger', options: { sigma: { mode: 'rms' }, valueScale: 'none', sets: 'shared' } },
  { name: 'window', options: {} },
];

/** One end-to-end case. */
interface Case {
  readonly heads: number;
  readonly group: number;
  readonly length: number;
  readonly headDim: number;
  readonly ratio: number;
  readonly seed: number;
}

/** Decode steps after the prefill. */
const STEPS = 3;

/** Host copies of the plans each backend's merge kernels received, in call order: the policies' decisions. */
interface Decisions {
  readonly neighbourGates: number[][];
  readonly segments: number[][];
}

/**
 * Wrap kernels to record the plans passed to the merge kernels (downloaded synchronously). mergeSimilar is reported
 * as not implemented, so KVMerger passes its plan to mergeSegments on every backend and the plans can be compared
 * (mergeSimilar itself is compared with the reference bit for bit in wasm-kernels.test.ts).
 */
function recording<T>(k: KVKernels<T>, read: (t: T) => ArrayLike<number>, d: Decisions): KVKernels<T> {
  return {
    ...k,
    kernels: () => k.kernels().map((i) => (i.name === 'mergeSimilar' ? { ...i, runs: 'reference' as const } : i)),
    mergeIntoNeighbours: (layer: LayerCache<T>, plan: NeighbourMergePlan<T>) => {
      d.neighbourGates.push(Array.from(read(plan.gate)));
      return k.mergeIntoNeighbours(layer, plan);
    },
    mergeSegments: (layer: LayerCache<T>, plan: SegmentPlan<T>) => {
      d.segments.push(Array.from(read(plan.segment)));
      return k.mergeSegments(layer, plan);
    },
  };
}

/** Token `t` of every head of a `[heads, n, d]` host tensor, as `[heads, 1, d]`. */
function token(x: HostTensor, t: number): HostTensor {
  const [rows, n, d] = x.shape as [number, number, number];
  const out = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++) out.set((x.data as Float32Array).subarray((r * n + t) * d, (r * n + t + 1) * d), r * d);
  return hostTensor('float32', [rows, 1, d], out);
}

/**
 * Run a policy on both backends in lockstep: prefill, then decode steps (append a token, attend to it,
 * step). Both backends receive the same attention (computed by the reference's observe on its own cache),
 * so every decision rests on the same scores. Returns both backends' recorded decisions.
 */
async function lockstep(engine: EngineCase, spec: (typeof POLICIES)[number], c: Case): Promise<{ tfjs: Decisions; reference: Decisions }> {
  const t = (await kv.backend('tfjs', { ...optionsFor(engine) })) as KVKernels<tf.Tensor>;
  const r = (await kv.backend('reference')) as KVKernels<HostTensor>;
  const tfDecisions: Decisions = { neighbourGates: [], segments: [] };
  const refDecisions: Decisions = { neighbourGates: [], segments: [] };
  const tk = recording(t, (x) => x.dataSync(), tfDecisions);
  const rk = recording(r, (x) => x.data, refDecisions);
  const { heads, group, length, headDim, ratio, seed } = c;
  const data = syntheticLayer({ heads, queryHeads: heads * group, length, headDim, seed, queries: Math.min(length, 16) });
  const extra = syntheticLayer({ heads, queryHeads: heads * group, length: STEPS, headDim, seed: seed + 1, queries: STEPS });
  const budget = Math.max(1, Math.round(ratio * length));
  const tag = `${spec.name} ${JSON.stringify(spec.options)} on ${engine}, ${heads}x${length}x${headDim} (group ${group}), budget ${budget}`;
  const before = tf.memory().numTensors;

  let refLayer = layerFromHost(r, data.layer);
  let tfLayer = layerFromHost(t, data.layer);
  const refPolicy = kv.policy(spec.name, spec.options);
  const tfPolicy = kv.policy(spec.name, spec.options);
  const seen = r.observe(refLayer, data.queries, data.queryPositions);
  const attention = t.fromHost(seen.attention);
  const lastAttention = t.fromHost(seen.lastAttention);
  const ctx = { budget, promptLength: length, seed };
  let refNext = await refPolicy.prefill(refLayer, seen, createContext({ kernels: rk, ...ctx }));
  let tfNext = await tfPolicy.prefill(tfLayer, { attention, lastAttention }, createContext({ kernels: tk, ...ctx }));
  t.dispose(attention, lastAttention);
  expectLayerClose(await hostOf(t, tfNext), await hostOf(r, refNext), `${tag}: prefill`);
  disposeLayer(t, tfLayer, tfNext);
  refLayer = refNext;
  tfLayer = tfNext;

  for (let s = 0; s < STEPS; s++) {
    const pos = hostTensor('int32', [heads, 1], new Int32Array(heads).fill(length + s));
    const [nk, nv] = [token(extra.layer.keys, s), token(extra.layer.values, s)];
    const refGrown = r.append(refLayer, nk, nv, pos);
    const [tk1, tv1, tp1] = [t.fromHost(nk), t.fromHost(nv), t.fromHost(pos)];
    const tfGrown = t.append(tfLayer, tk1, tv1, tp1);
    t.dispose(tk1, tv1, tp1);
    disposeLayer(t, tfLayer);
    const q = token(extra.queries, s);
    const o = r.observe(refGrown, q, hostTensor('int32', [1], [length + s]));
    const [ta, tl] = [t.fromHost(o.attention), t.fromHost(o.lastAttention)];
    const stepCtx = { ...ctx, step: s + 1 };
    refNext = await refPolicy.step(refGrown, o, createContext({ kernels: rk, ...stepCtx }));
    tfNext = await tfPolicy.step(tfGrown, { attention: ta, lastAttention: tl }, createContext({ kernels: tk, ...stepCtx }));
    t.dispose(ta, tl);
    expectLayerClose(await hostOf(t, tfNext), await hostOf(r, refNext), `${tag}: decode step ${s + 1}`);
    disposeLayer(t, tfGrown, tfNext);
    refLayer = refNext;
    tfLayer = tfNext;
  }
  disposeLayer(t, tfLayer);
  // Every tensor the policy and the kernels made along the way was released.
  expect(tf.memory().numTensors, `${tag}: tensors left behind`).toBe(before);
  return { tfjs: tfDecisions, reference: refDecisions };
}

function hostOf<T>(k: KVKernels<T>, l: LayerCache<T>): Promise<HostLayer> {
  return layerToHost(k, l);
}

const shapes = fc.record({
  heads: fc.integer({ min: 1, max: 8 }),
  group: fc.constantFrom(1, 2, 4),
  length: fc.integer({ min: 8, max: 400 }),
  headDim: fc.constantFrom(16, 32, 64, 128),
  ratio: fc.double({ min: 0.15, max: 0.8, noNaN: true }),
  seed: fc.integer({ min: 0, max: 1_000_000 }),
});

for (const engine of ENGINES) {
  describe(`tfjs ${engine}: policies end to end equal the reference backend`, () => {
    for (const spec of POLICIES) {
      it(`${spec.name} ${JSON.stringify(spec.options)}: prefill and ${STEPS} decode steps on random shapes`, async () => {
        await fc.assert(
          fc.asyncProperty(shapes, async (c) => {
            const d = await lockstep(engine, spec, c);
            expect(d.tfjs).toEqual(d.reference);
          }),
          { numRuns: 4 },
        );
      });
    }

    it('CaM with the same seed makes the same merge decisions (Bernoulli gates) on a long prompt', async () => {
      const d = await lockstep(engine, { name: 'cam', options: {} }, { heads: 4, group: 2, length: 2048, headDim: 64, ratio: 0.3, seed: 11 });
      expect(d.reference.neighbourGates.length).toBe(STEPS + 1);
      // The gates are the Bernoulli draws: identical arrays mean identical merge decisions.
      expect(d.tfjs.neighbourGates).toEqual(d.reference.neighbourGates);
      const merged = d.reference.neighbourGates[0]!.filter((g) => g === 1).length;
      const skipped = d.reference.neighbourGates[0]!.filter((g) => g === 0).length;
      expect(merged).toBeGreaterThan(0);
      expect(skipped).toBeGreaterThan(0);
    });

    it('KVMerger merges the same runs on a long prompt (8,192 tokens)', async () => {
      const d = await lockstep(engine, { name: 'kvmerger', options: {} }, { heads: 2, group: 2, length: 8192, headDim: 64, ratio: 0.4, seed: 5 });
      expect(d.reference.segments.length).toBeGreaterThan(0);
      expect(d.tfjs.segments).toEqual(d.reference.segments);
    });

    it('H2O on 64 kv heads', async () => {
      await lockstep(engine, { name: 'h2o', options: {} }, { heads: 64, group: 1, length: 128, headDim: 32, ratio: 0.5, seed: 3 });
    });
  });
}
