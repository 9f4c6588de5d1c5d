import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AutoModelForCausalLM, AutoTokenizer, env } from '@huggingface/transformers';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { PASSKEY_QUESTION, modelTinyPath, passkeySample } from '@kvfold/model-tiny';
import { exportOnnx } from '@kvfold/onnx-export';
import { answer } from '@kvfold/pipeline';
import { transformersEngine } from '@kvfold/transformers';

// The embedded model exported for transformers.js (`npx kvfold export-onnx embedded <folder>`), loaded offline.
const root = await mkdtemp(join(tmpdir(), 'kvfold-tjs-'));
await exportOnnx(modelTinyPath, join(root, 'tiny-onnx'));
env.allowRemoteModels = false;
env.localModelPath = root;
const tokenizer = await AutoTokenizer.from_pretrained('tiny-onnx');
const model = await AutoModelForCausalLM.from_pretrained('tiny-onnx');

// The same one call as on the embedded model; transformers.js runs the decoder, kvfold compresses its cache.
const sample = passkeySample({ length: 1024, depth: 0.5, seed: 1 });
const context = sample.prompt.slice(0, -PASSKEY_QUESTION.length);
const engine = transformersEngine({ model, tokenizer, kernels: createReferenceKernels() });
const result = await answer({ context, question: PASSKEY_QUESTION, policy: 'kvmerger', budget: 0.35, model: engine });
console.log(`key ${sample.answer}, answer ${result.answer}`);
console.log(`slots per layer: ${result.keptSlots.join(', ')} (budget ${result.budgetSlots} of ${result.contextTokens} context tokens)`);
await model.dispose();
await rm(root, { recursive: true, force: true });
