// A user's ESM + TypeScript project, compiled with `tsc --strict` against the packed packages installed
// from their tarballs (see .ci/pack.mjs), then run. It touches every public package's types and checks
// what only an installed copy can show: one @kvfold/core shared by every plugin (instanceof works across
// packages), the embedded model's weights and tfjs's wasm files found inside node_modules, and the onnx
// backend's typed error when onnxruntime-node (an optional peer) is not installed, and the benchmark's when
// its transformers.js runtime's optional peers are not. (transformers.ts is the transformers.js project's.)
import { existsSync } from 'node:fs';
import { BackendUnavailableError, ErrorCode, KVFold, type KVCachePolicy, type KVFoldPlugin } from '@kvfold/core';
import onnx, { ORT_INSTALL_HINT } from '@kvfold/backend-onnx';
import reference from '@kvfold/backend-reference';
import tfjs from '@kvfold/backend-tfjs';
import { Progress, TRANSFORMERS_INSTALL_HINT, createKVFold, preset, resolveBenchConfig, runBench } from '@kvfold/bench';
import { PASSKEY_QUESTION, modelTinyPath, passkeySample } from '@kvfold/model-tiny';
import { answer, releaseModels, type AnswerEngine, type AnswerResult } from '@kvfold/pipeline';
import baselines from '@kvfold/policy-baselines';
import cam from '@kvfold/policy-cam';
import h2o from '@kvfold/policy-h2o';
import knorm from '@kvfold/policy-knorm';
import kvmerger from '@kvfold/policy-kvmerger';
import snapkv from '@kvfold/policy-snapkv';
import { generate, loadModel, type GenerateResult } from '@kvfold/runtime';
import { checkPolicy } from '@kvfold/testkit';
import { VERSION, main } from 'kvfold';

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`consumer check failed: ${what}`);
  console.log(`ok: ${what}`);
}

const plugins: KVFoldPlugin[] = [reference, tfjs, onnx, baselines, cam, h2o, kvmerger, snapkv, knorm];
const kv = KVFold.create({ plugins });
const builtins = ['cam', 'chain', 'full', 'h2o', 'knorm', 'kvmerger', 'pyramidkv', 'random', 'snapkv', 'window'];
check(JSON.stringify(kv.policies.names()) === JSON.stringify(builtins), `every built-in policy registers on one core (${builtins.join(', ')})`);

const onnxError = await kv.backend('onnx').then(
  () => undefined,
  (e: unknown) => e,
);
check(
  onnxError instanceof BackendUnavailableError && onnxError.code === ErrorCode.BackendUnavailable && onnxError.message.includes('ONNXRUNTIME_NODE_INSTALL=skip') && onnxError.message.includes(ORT_INSTALL_HINT),
  'without onnxruntime-node the onnx backend is a BackendUnavailableError that says how to install it, offline too',
);

const tfjsKernels = await kv.backend('tfjs');
check(tfjsKernels.describe().includes('wasm'), `tfjs runs on its wasm engine from node_modules (${tfjsKernels.describe()})`);

const policy: KVCachePolicy = kv.policy('kvmerger');
check((await checkPolicy(() => kv.policy('h2o'), { prefillLength: 'budget', keepsRecent: 1 })).length === 0 && policy.name === 'kvmerger', 'the testkit matrix runs on an installed policy');

const sample = passkeySample({ length: 256, depth: 0.5, seed: 2 });
const result: AnswerResult = await answer({ context: sample.prompt.slice(0, -PASSKEY_QUESTION.length), question: PASSKEY_QUESTION, policy: 'h2o', budget: 0.5 });
check(result.contextTokens === 256 - PASSKEY_QUESTION.length + 1 && !result.overBudget, `answer() on the embedded model at ${modelTinyPath.includes('node_modules') ? 'node_modules' : modelTinyPath} (said ${JSON.stringify(result.answer)}, key ${sample.answer})`);
await releaseModels();

const engine: AnswerEngine = { name: 'typed engine', answer: async () => ({ text: 'x', contextTokens: 1, questionTokens: 1, generatedTokens: 1, keptSlots: [1], cacheBytes: 1 }) };
check((await answer({ context: 'c', question: 'q', policy, model: engine })).engine === 'typed engine', 'a custom AnswerEngine type-checks and runs');

const model = await loadModel(modelTinyPath);
const generated: GenerateResult = await generate({ model, prompt: sample.prompt, maxNewTokens: 8 });
check(model.config.layers === 3 && generated.promptTokens === 257, `the embedded weights load and generate through @kvfold/runtime (full cache said ${JSON.stringify(generated.text)})`);
model.dispose();

const config = resolveBenchConfig(await createKVFold(), preset('smoke'));
check(config.variants.length === 5, 'a bench preset resolves');

const smoke = preset('smoke');
const tjsConfig = resolveBenchConfig(await createKVFold(), { ...smoke, bench: { ...(smoke.bench as object), runtimes: ['transformers.js'] } });
const tjsError = await runBench(await createKVFold(), tjsConfig, { dir: 'runs-api/tjs', progress: new Progress('quiet') }).then(
  () => undefined,
  (e: unknown) => e,
);
check(
  tjsError instanceof BackendUnavailableError && tjsError.details.missing === '@kvfold/transformers' && tjsError.message.includes(TRANSFORMERS_INSTALL_HINT) && !existsSync('runs-api/tjs'),
  'a bench run on transformers.js without its optional peers is a BackendUnavailableError saying how to install them, before any run folder',
);

const out: string[] = [];
const code = await main(['list', '--json'], { cwd: process.cwd(), stdout: { write: (s: string) => out.push(s) }, stderr: { write: () => true } });
check(code === 0 && (JSON.parse(out.join('')) as { policies: unknown[] }).policies.length >= 6, `kvfold ${VERSION} runs in-process (main(["list", "--json"]))`);
