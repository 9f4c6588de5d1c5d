import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { modelTinyPath } from '@kvfold/model-tiny';
import { exportOnnx, exposeAttentionFile } from '@kvfold/onnx-export';

const root = await mkdtemp(join(tmpdir(), 'kvfold-export-'));

// Any folder @kvfold/runtime loads (Llama, Mistral, Qwen2 safetensors) works; here the embedded model.
const out = await exportOnnx(modelTinyPath, join(root, 'tiny-onnx'));
console.log(`${out.config.layers} layers, ${out.weightBytes} bytes of weights: ${out.files.join(', ')}`);

// A third-party export with plain MatMul/Softmax attention (here an Optimum-style one kvfold writes) gains the outputs.
await exportOnnx(modelTinyPath, join(root, 'optimum'), { layout: 'plain' });
const exposed = await exposeAttentionFile(join(root, 'optimum/onnx/model.onnx'), join(root, 'optimum/onnx/model_exposed.onnx'));
console.log(`expose-attention read ${exposed.layers} Softmax nodes: ${exposed.softmaxNodes.join(', ')}`);
await rm(root, { recursive: true, force: true });
