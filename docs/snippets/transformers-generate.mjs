import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AutoModelForCausalLM, AutoTokenizer, env } from '@huggingface/transformers';
import { KVFold } from '@kvfold/core';
import reference from '@kvfold/backend-reference';
import { modelTinyPath, passkeySample } from '@kvfold/model-tiny';
import { exportOnnx } from '@kvfold/onnx-export';
import h2o from '@kvfold/policy-h2o';
import { generateCompressed } from '@kvfold/transformers';

// An ONNX decoder folder transformers.js loads: here the embedded model, as `npx kvfold export-onnx embedded <folder>` writes it.
const root = await mkdtemp(join(tmpdir(), 'kvfold-tjs-'));
await exportOnnx(modelTinyPath, join(root, 'tiny-onnx'));
env.allowRemoteModels = false; // everything from the local folder
env.localModelPath = root;
const tokenizer = await AutoTokenizer.from_pretrained('tiny-onnx');
const model = await AutoModelForCausalLM.from_pretrained('tiny-onnx');

const kv = KVFold.create({ plugins: [reference, h2o] });
const { prompt, answer } = passkeySample({ length: 512, depth: 0.25, seed: 3 });
console.log(`key ${answer}`);
for (const policy of [undefined, kv.policy('h2o')]) {
  const r = await generateCompressed({ model, tokenizer, kernels: await kv.backend('reference'), policy, budget: 0.5, prompt, maxNewTokens: 8 });
  console.log(`${policy?.name ?? 'full cache'}: ${JSON.stringify(r.text)}, ${r.cache.lengths.join('/')} slots per layer, ${r.cache.finalBytes} cache bytes at the end`);
}
await model.dispose();
await rm(root, { recursive: true, force: true });
