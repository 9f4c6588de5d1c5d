// The transformers.js user's ESM + TypeScript project (see .ci/pack.mjs): the packed packages installed
// with @huggingface/transformers (its onnxruntime-node download skipped), compiled with `tsc --strict`,
// then run on the folder `npx kvfold export-onnx embedded tiny-onnx` wrote. transformers.js's own types
// must fit kvfold's structural ones without casts.
import { AutoModelForCausalLM, AutoTokenizer, env } from '@huggingface/transformers';
import { KVFold } from '@kvfold/core';
import onnx from '@kvfold/backend-onnx';
import reference from '@kvfold/backend-reference';
import { PASSKEY_QUESTION, passkeySample } from '@kvfold/model-tiny';
import { answer, type AnswerResult } from '@kvfold/pipeline';
import h2o from '@kvfold/policy-h2o';
import { generateCompressed, transformersEngine, type GenerateCompressedResult } from '@kvfold/transformers';

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`consumer check failed: ${what}`);
  console.log(`ok: ${what}`);
}

env.allowRemoteModels = false;
env.localModelPath = process.cwd();
const tokenizer = await AutoTokenizer.from_pretrained('tiny-onnx');
const model = await AutoModelForCausalLM.from_pretrained('tiny-onnx');

const kv = KVFold.create({ plugins: [reference, onnx, h2o] });
const sample = passkeySample({ length: 384, depth: 0.5, seed: 4 });
const runs: GenerateCompressedResult[] = [];
for (const backend of ['reference', 'onnx'] as const) {
  runs.push(await generateCompressed({ model, tokenizer, kernels: await kv.backend(backend), policy: kv.policy('h2o'), budget: 0.5, prompt: sample.prompt, maxNewTokens: 8 }));
}
const [ref, ort] = runs as [GenerateCompressedResult, GenerateCompressedResult];
check(
  ref.cache.lengths.every((n) => n === ref.cache.budget) && ort.text === ref.text && ort.cache.zeroCopy,
  `generateCompressed with H2O at 50% on the reference and the onnx backend (onnxruntime-node came with transformers.js): the same text ${JSON.stringify(ref.text)}, ${ref.cache.lengths.join('/')} slots, present tensors adopted without copies on onnx`,
);

const result: AnswerResult = await answer({
  context: sample.prompt.slice(0, -PASSKEY_QUESTION.length),
  question: PASSKEY_QUESTION,
  policy: 'kvmerger',
  budget: 0.35,
  model: transformersEngine({ model, tokenizer, kernels: await kv.backend('reference') }),
});
check(result.engine.startsWith('@kvfold/transformers') && result.contextTokens === 384 - PASSKEY_QUESTION.length + 1, `answer() through transformersEngine (said ${JSON.stringify(result.answer)}, key ${sample.answer})`);
await model.dispose();
