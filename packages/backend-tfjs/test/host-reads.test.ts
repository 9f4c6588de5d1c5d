// The prefills read kernel results (scores, cosines, selected slots) on the host through the wasm heap's view,
// copied at once into reused arrays, instead of downloads: a download allocates a fresh array per call, whose
// page faults cost about 1 ms per 32 x 16,384 float32 (bench/RESULTS.md, issue 12, eighth session).
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { KVFold, createContext, disposeLayer, layerFromHost, type KVKernels } from '@kvfold/core';
import reference from '@kvfold/backend-reference';
import h2o from '@kvfold/policy-h2o';
import cam from '@kvfold/policy-cam';
import kvmerger from '@kvfold/policy-kvmerger';
import { syntheticLayer } from '@kvfold/testkit';
import tfjs from '../src/index.js';

const kv = KVFold.create({ plugins: [reference, tfjs, h2o, cam, kvmerger] });

describe('tfjs wasm: host reads of the prefills', () => {
  it('H2O, CaM and KVMerger download nothing during a prefill, and compress as the reference backend does', async () => {
    const k = (await kv.backend('tfjs', { engine: 'wasm' })) as KVKernels<tf.Tensor>;
    const ref = await kv.backend('reference');
    const data = syntheticLayer({ heads: 3, length: 96, headDim: 16, seed: 4, queries: 8 });
    for (const name of ['h2o', 'cam', 'kvmerger'] as const) {
      let downloads = 0;
      const counted: KVKernels<tf.Tensor> = Object.create(k);
      counted.toHost = (t) => {
        downloads++;
        return k.toHost(t);
      };
      const layer = layerFromHost(k, data.layer);
      const seen = k.observe(layer, k.fromHost(data.queries), k.fromHost(data.queryPositions));
      const out = await kv.policy(name, {}, { guard: false }).prefill(layer, { attention: seen.attention }, createContext({ kernels: counted, budget: 40, promptLength: 96, seed: 3 }));
      expect(downloads, name).toBe(0);
      // The same slots as on the reference backend (whose reads were views already).
      const rLayer = layerFromHost(ref, data.layer);
      const rSeen = ref.observe(rLayer, ref.fromHost(data.queries), ref.fromHost(data.queryPositions));
      const rOut = await kv.policy(name, {}, { guard: false }).prefill(rLayer, { attention: rSeen.attention }, createContext({ kernels: ref, budget: 40, promptLength: 96, seed: 3 }));
      expect(Array.from((await k.toHost(out.positions)).data), name).toEqual(Array.from((await ref.toHost(rOut.positions)).data));
      k.dispose(seen.attention, seen.lastAttention);
      disposeLayer(k, layer, out);
    }
  });
});
