import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { hostTensor, type DType, type HostTensor, type KVKernels, type LayerCache } from '@kvfold/core';

/** Engines the tests can run on here (tensorflow needs tfjs-node, which is not installed). */
export type TestEngine = 'cpu' | 'wasm';

/** Activate a tfjs engine for the current test file; returns false when it cannot start. */
export async function useEngine(engine: TestEngine): Promise<boolean> {
  try {
    const ok = await tf.setBackend(engine);
    await tf.ready();
    return ok && tf.getBackend() === engine;
  } catch {
    return false;
  }
}

function notNeeded(name: string): never {
  throw new Error(`minimal test kernels do not implement ${name}`);
}

/**
 * The few kernels the runtime itself calls (append plus host transfer), written directly on tfjs
 * ops. The runtime's tests use them so decoder and cache-manager checks do not depend on the full
 * tfjs backend package; policy integration tests use `createTfjsKernels` from @kvfold/backend-tfjs.
 */
export function minimalKernels(): KVKernels<tf.Tensor> {
  return {
    backend: 'test-tfjs',
    describe: () => `minimal test kernels on tfjs ${tf.getBackend()}`,
    fromHost: (t: HostTensor) => tf.tensor(t.data, [...t.shape], t.dtype),
    async toHost(t: tf.Tensor) {
      const data = await t.data();
      return hostTensor(t.dtype as DType, t.shape, data as Float32Array | Int32Array);
    },
    shapeOf: (t) => t.shape,
    dtypeOf: (t) => t.dtype as DType,
    dispose: (...ts) => {
      for (const t of ts) if (t && !t.isDisposed) t.dispose();
    },
    async allFinite(t, bound) {
      const d = await t.data();
      return d.every((v) => Number.isFinite(v) && (bound === undefined || Math.abs(v) < bound));
    },
    append(layer: LayerCache<tf.Tensor>, keys, values, positions): LayerCache<tf.Tensor> {
      return tf.tidy(() => {
        const [h, n] = positions.shape as [number, number];
        return {
          keys: tf.concat([layer.keys, keys], 1),
          values: tf.concat([layer.values, values], 1),
          positions: tf.concat([layer.positions, positions], 1),
          counts: tf.concat([layer.counts, tf.ones([h, n], 'int32')], 1),
          scores: tf.concat([layer.scores, tf.zeros([h, n], 'float32')], 1),
        };
      });
    },
    accumulate: (scores, attention) => tf.add(scores, attention),
    topK: () => notNeeded('topK'),
    // The guard reads the newest slots back with gather to scan what a decode step appended.
    gather: (layer, index) =>
      tf.tidy(() => ({
        keys: tf.gather(layer.keys, index, 1, 1),
        values: tf.gather(layer.values, index, 1, 1),
        positions: tf.gather(layer.positions, index, 1, 1),
        counts: tf.gather(layer.counts, index, 1, 1),
        scores: tf.gather(layer.scores, index, 1, 1),
      })),
    adjacentCosine: () => notNeeded('adjacentCosine'),
    mergeSegments: () => notNeeded('mergeSegments'),
    mergeIntoNeighbours: () => notNeeded('mergeIntoNeighbours'),
    observe: () => notNeeded('observe'),
  };
}

/** Largest absolute difference of two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/**
 * Every kernel of the reference backend, run on host copies of tfjs tensors (`dataSync`). Lets policy
 * integration tests run the runtime on tfjs tensors with ground-truth kernel semantics, independently
 * of the tfjs backend package.
 */
export function bridgeKernels(ref: KVKernels<HostTensor>): KVKernels<tf.Tensor> {
  const down = (t: tf.Tensor): HostTensor => hostTensor(t.dtype as DType, t.shape, t.dataSync() as Float32Array | Int32Array);
  const up = (t: HostTensor): tf.Tensor => tf.tensor(t.data, [...t.shape], t.dtype);
  const downLayer = (l: LayerCache<tf.Tensor>): LayerCache<HostTensor> => ({
    keys: down(l.keys),
    values: down(l.values),
    positions: down(l.positions),
    counts: down(l.counts),
    scores: down(l.scores),
  });
  const upLayer = (l: LayerCache<HostTensor>): LayerCache<tf.Tensor> => ({
    keys: up(l.keys),
    values: up(l.values),
    positions: up(l.positions),
    counts: up(l.counts),
    scores: up(l.scores),
  });
  const base = minimalKernels();
  return {
    ...base,
    backend: 'test-bridge',
    describe: () => `reference kernels bridged to tfjs ${tf.getBackend()}`,
    append: (l, k, v, p) => upLayer(ref.append(downLayer(l), down(k), down(v), down(p))),
    accumulate: (s, a) => up(ref.accumulate(down(s), down(a))),
    topK: (s, k, from, to) => up(ref.topK(down(s), k, from, to)),
    gather: (l, i) => upLayer(ref.gather(downLayer(l), down(i))),
    adjacentCosine: (k) => up(ref.adjacentCosine(down(k))),
    mergeSegments: (l, p) => upLayer(ref.mergeSegments(downLayer(l), { segment: down(p.segment), pivot: down(p.pivot), sigma: down(p.sigma), valueScale: p.valueScale })),
    mergeIntoNeighbours: (l, p) =>
      upLayer(ref.mergeIntoNeighbours(downLayer(l), { keep: down(p.keep), source: down(p.source), targetStart: down(p.targetStart), targetCount: down(p.targetCount), gate: down(p.gate) })),
    observe: (l, q, qp, o) => {
      const r = ref.observe(downLayer(l), down(q), down(qp), o);
      return { sums: up(r.sums), last: up(r.last) };
    },
  };
}
