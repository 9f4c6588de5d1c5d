import { describe, it, expect } from 'vitest';
import { hostTensor, hostLayer, layerFromHost, layerToHost } from '@kvfold/core';
import { createOnnxKernels } from '../src/index.js';

describe('smoke', () => {
  it('runs each kernel once', async () => {
    const k = createOnnxKernels({ threads: 1, native: 'require' });
    console.log(k.describe());
    const layer = layerFromHost(k, hostLayer({ heads: 1, length: 4, headDim: 2, keys: [1, 0, 1, 0, 0, 1, -1, 0], values: [1, 2, 3, 4, 5, 6, 7, 8], scores: [0.1, 0.9, 0.5, 0.9] }));
    const cos = await k.toHost(k.adjacentCosine(layer.keys));
    console.log('cos', cos.data);
    const idx = k.topK(layer.scores, 3, 0, 4);
    console.log('topk', (await k.toHost(idx)).data);
    console.log('topk window', (await k.toHost(k.topK(layer.scores, 1, 2, 4))).data);
    const g = k.gather(layer, idx);
    console.log('gather', await layerToHost(k, g));
    const ap = k.append(layer, k.fromHost(hostTensor('float32', [1, 1, 2], [9, 9])), k.fromHost(hostTensor('float32', [1, 1, 2], [8, 8])), k.fromHost(hostTensor('int32', [1, 1], [7])));
    console.log('append', await layerToHost(k, ap));
    console.log('acc', (await k.toHost(k.accumulate(layer.scores, layer.scores))).data);
    console.log('finite', await k.allFinite(layer.keys), await k.allFinite(k.fromHost(hostTensor('float32', [2], [1, NaN]))));
    const ms = k.mergeSegments(layer, {
      segment: k.fromHost(hostTensor('int32', [1, 4], [0, 0, 1, -1])),
      pivot: k.fromHost(hostTensor('int32', [1, 2], [1, 2])),
      sigma: k.fromHost(hostTensor('float32', [1, 2], [1, 1])),
      valueScale: 'count',
    });
    console.log('merge', await layerToHost(k, ms));
    const mn = k.mergeIntoNeighbours(layer, {
      keep: k.fromHost(hostTensor('int32', [1, 2], [0, 3])),
      source: k.fromHost(hostTensor('int32', [1, 2], [1, 2])),
      targetStart: k.fromHost(hostTensor('int32', [1, 2], [0, 1])),
      targetCount: k.fromHost(hostTensor('int32', [1, 2], [2, 1])),
      gate: k.fromHost(hostTensor('float32', [1, 2], [1, 1])),
    });
    console.log('cam', await layerToHost(k, mn));
    const ob = k.observe(layer, k.fromHost(hostTensor('float32', [2, 2, 2], [1, 0, 0, 1, 1, 1, 0, 0])), k.fromHost(hostTensor('int32', [2], [1, 3])), { groupReduction: 'max' });
    console.log('observe', (await k.toHost(ob.sums)).data, (await k.toHost(ob.last)).data);
    const at = k.accumulateTopK(layer.scores, layer.scores, 2, 0, 4);
    console.log('acctopk', (await k.toHost(at.index)).data);
    expect(cos.shape).toEqual([1, 3]);
  });
});
