import { ElemType, GraphBuilder, attr, onnx } from '@kvfold/onnx-graph';

// y = softmax(x · w + b) over the last axis, with a symbolic batch dimension and weights as initializers.
const g = new GraphBuilder('tiny_head', { producer: 'my-exporter' });
const x = g.input('x', 'float32', ['batch', 4]);
const w = g.initializer('w', [4, 3], Float32Array.from({ length: 12 }, (_, i) => (i % 5) / 10));
const b = g.initializer('b', [3], Float32Array.of(0, 0.5, 1));
const logits = g.op('Add', [g.op('MatMul', [x, w]), b]);
g.op('Softmax', [logits], { axis: attr.int(-1) }, { names: ['y'] });
g.output('y', 'float32', ['batch', 3]);

const bytes = g.build(); // an ONNX model, opset 18, ready for onnxruntime or any ONNX tool
const model = onnx.ModelProto.decode(bytes);
console.log(`${bytes.length} bytes, ir ${model.irVersion}, opset ${model.opsetImport[0].version}`);
console.log(`nodes: ${model.graph.node.map((n) => n.opType).join(' -> ')}`);
console.log(`inputs: ${model.graph.input.map((i) => `${i.name} ${i.type.tensorType.elemType === ElemType.float32 ? 'float32' : '?'}`).join(', ')}; initializers: ${model.graph.initializer.map((i) => i.name).join(', ')}`);
