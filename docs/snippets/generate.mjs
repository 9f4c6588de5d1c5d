import { KVFold } from '@kvfold/core';
import { modelTinyPath, passkeySample } from '@kvfold/model-tiny';
import h2o from '@kvfold/policy-h2o';
import { generate, loadModel } from '@kvfold/runtime';

const model = await loadModel(modelTinyPath); // or any Llama / Mistral / Qwen2 safetensors folder
const { prompt, answer } = passkeySample({ length: 512, depth: 0.25, seed: 3 });
console.log(`key ${answer}`);

// No policy keeps every token; H2O compresses after the prompt and evicts back to the budget at each step.
for (const policy of [undefined, KVFold.create({ plugins: [h2o] }).policy('h2o')]) {
  const result = await generate({ model, prompt, policy, budget: 0.5, maxNewTokens: 8 });
  console.log(`${policy?.name ?? 'full cache'}: ${JSON.stringify(result.text)}, ${result.cache.lengths.join('/')} slots per layer at the end`);
}
model.dispose();
