// No leaks: 1,000 compress calls of the policies through the tfjs backend leave tfjs's tensor count and
// byte count exactly where they started.
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { KVFold, createContext, disposeLayer, layerFromHost, type KVKernels } from '@kvfold/core';
import reference from '@kvfold/backend-reference';
import baselines from '@kvfold/policy-baselines';
import h2o from '@kvfold/policy-h2o';
import cam from '@kvfold/policy-cam';
import kvmerger from '@kvfold/policy-kvmerger';
import { syntheticLayer } from '@kvfold/testkit';
import tfjs from '../src/index.js';

const kv = KVFold.create({ plugins: [reference, tfjs, baselines, h2o, cam, kvmerger] });
const POLICIES = ['h2o', 'cam', 'kvmerger', 'window'] as const;
const CALLS = 1000;

describe('tfjs memory', () => {
  it(`tf.memory() is unchanged after ${CALLS} compress calls (prefill and decode steps, every policy)`, async () => {
    const k = (await kv.backend('tfjs', { engine: 'wasm' })) as KVKernels<tf.Tensor>;
    const data = syntheticLayer({ heads: 2, queryHeads: 4, length: 40, headDim: 16, seed: 1, queries: 8 });
    const grow = syntheticLayer({ heads: 2, queryHeads: 4, length: 1, headDim: 16, seed: 2, queries: 1 });
    const [pq, pqp] = [k.fromHost(data.queries), k.fromHost(data.queryPositions)];
    const q = k.fromHost(grow.queries);
    const qp = k.fromHost({ dtype: 'int32', shape: [1], data: Int32Array.of(40) });
    const newPos = k.fromHost({ dtype: 'int32', shape: [2, 1], data: Int32Array.of(40, 40) });
    const [nk, nv] = [k.fromHost(grow.layer.keys), k.fromHost(grow.layer.values)];
    const policies = POLICIES.map((name) => kv.policy(name));
    // One warm-up round: engines allocate lazily (wasm heap, cached constants) on first use.
    let calls = 0;
    const round = async (p: number): Promise<void> => {
      const policy = policies[p % policies.length]!;
      const layer = layerFromHost(k, data.layer);
      const seen = k.observe(layer, pq, pqp);
      const ctx = { kernels: k, budget: 20, promptLength: 40, seed: p };
      const compressed = await policy.prefill(layer, seen, createContext(ctx));
      k.dispose(seen.attention, seen.lastAttention);
      disposeLayer(k, layer, compressed);
      // One decode step on the compressed cache.
      const grown = k.append(compressed, nk, nv, newPos);
      disposeLayer(k, compressed);
      const o = k.observe(grown, q, qp);
      const next = await policy.step(grown, o, createContext({ ...ctx, step: 1 }));
      k.dispose(o.attention, o.lastAttention);
      disposeLayer(k, grown, next);
      disposeLayer(k, next);
      calls += 2;
    };
    await round(0);
    const before = tf.memory();
    calls = 0;
    for (let p = 0; calls < CALLS; p++) await round(p);
    const after = tf.memory();
    expect(calls).toBe(CALLS);
    expect(after.numTensors).toBe(before.numTensors);
    expect(after.numBytes).toBe(before.numBytes);
    expect(after.numDataBuffers).toBe(before.numDataBuffers);
    k.dispose(pq, pqp, q, qp, newPos, nk, nv);
  });
});
