import { describe, it, expect } from 'vitest';
import { layerFromHost } from '@kvfold/core';
import { createOnnxKernels, KVFOLD_DOMAIN, OPSET } from '../src/index.js';
import { onnx } from '../src/graph.js';

/** Decode a model with every nested message typed as its class (fields present, defaults filled). */
function decode(bytes: Uint8Array) {
  const m = onnx.ModelProto.decode(bytes);
  const graph = m.graph as InstanceType<typeof onnx.GraphProto>;
  return {
    opsetImport: m.opsetImport,
    nodes: graph.node as InstanceType<typeof onnx.NodeProto>[],
    inputs: graph.input as InstanceType<typeof onnx.ValueInfoProto>[],
    functions: m.functions as InstanceType<typeof onnx.FunctionProto>[],
  };
}
import { adjacentCosineModel } from '../src/kernels/adjacentCosine.js';
import { accumulateModel } from '../src/kernels/accumulate.js';
import { accumulateTopKModel } from '../src/kernels/accumulateTopK.js';
import { mergeIntoNeighboursModel } from '../src/kernels/mergeIntoNeighbours.js';
import { mergeSegmentsModel } from '../src/kernels/mergeSegments.js';
import { observeModel } from '../src/kernels/observe.js';
import { topKModel } from '../src/kernels/topK.js';
import { randomLayer, rng } from './helpers.js';

const fused = {
  AdjacentCosine: adjacentCosineModel(),
  SelectTopK: topKModel(),
  AccumulateSelect: accumulateTopKModel(),
  MergeSegments: mergeSegmentsModel('count'),
  MergeIntoNeighbours: mergeIntoNeighboursModel(),
  Observe: observeModel('max', true),
};

describe('kernel models', () => {
  for (const [op, bytes] of Object.entries(fused)) {
    it(`${op}: one ai.kvfold node, its function body in the model, both opset imports`, () => {
      const m = decode(bytes);
      const imports = Object.fromEntries(m.opsetImport.map((o) => [o.domain, Number(o.version)]));
      expect(imports).toEqual({ '': OPSET, [KVFOLD_DOMAIN]: 1 });
      expect(m.nodes.map((n) => `${n.domain}::${n.opType}`)).toEqual([`${KVFOLD_DOMAIN}::${op}`]);
      const fn = m.functions.find((f) => f.name === op)!;
      expect(fn.domain).toBe(KVFOLD_DOMAIN);
      // ORT validates a body against the function's own imports: it must import the default domain.
      expect(fn.opsetImport.some((o) => o.domain === '' && Number(o.version) === OPSET)).toBe(true);
      // Only standard ops (or nested ai.kvfold functions shipped in the same model) in the body.
      for (const n of fn.node as InstanceType<typeof onnx.NodeProto>[]) {
        if (n.domain === KVFOLD_DOMAIN) expect(m.functions.map((f) => f.name)).toContain(n.opType);
        else expect(n.domain).toBe('');
      }
      // Every input dimension is symbolic: one session serves every shape.
      for (const i of m.inputs) for (const d of i.type!.tensorType!.shape!.dim!) if (i.name !== 'k' && i.name !== 'from' && i.name !== 'to' && i.name !== 'scale') expect(d.dimParam).not.toBe('');
    });
  }

  it('a plain kernel imports only the default domain and ships no functions', () => {
    const m = decode(accumulateModel());
    expect(m.opsetImport.map((o) => o.domain)).toEqual(['']);
    expect(m.functions).toEqual([]);
  });

  it('attributes of fused ops reach the body through ref_attr_name', () => {
    const m = decode(fused.MergeSegments);
    expect(m.nodes[0]!.attribute.map((a) => [a.name, Number(a.i)])).toEqual([['value_scale', 1]]);
    const refs = (m.functions[0]!.node as InstanceType<typeof onnx.NodeProto>[]).flatMap((n) => n.attribute.filter((a) => a.refAttrName).map((a) => a.refAttrName));
    expect(refs).toEqual(['value_scale']);
    expect(m.functions[0]!.attribute).toEqual(['value_scale']);
  });
});

describe('session cache', () => {
  it('creates one session per kernel variant, whatever the shapes', () => {
    const k = createOnnxKernels({ native: 'off', threads: 1 });
    for (const [H, L, D] of [[1, 3, 2], [2, 7, 4], [4, 1, 8]] as const) {
      const l = layerFromHost(k, randomLayer(H, L, D, rng(L)));
      k.adjacentCosine(l.keys);
      k.topK(l.scores, 1, 0, L);
      k.gather(l, k.topK(l.scores, 1, 0, L));
      k.accumulate(l.scores, l.scores);
    }
    expect(k.loadedKernels().sort()).toEqual(['accumulate:float32', 'adjacentCosine:float32', 'gather:float32', 'topK:float32']);
    k.release();
    expect(k.loadedKernels()).toEqual([]);
  });
});
