import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type * as tf from '@tensorflow/tfjs-core';
import { it } from 'vitest';
import type { KVCachePolicy, KVKernels } from '@kvfold/core';
import { H2OPolicy } from '@kvfold/policy-h2o';
import { KVMergerPolicy } from '@kvfold/policy-kvmerger';
import { CaMPolicy } from '@kvfold/policy-cam';
import { byteTokenizer, createModel, generate, parseModelConfig, randomWeights } from '../src/index.js';
import { minimalKernels, useEngine, type TestEngine } from '../test/helpers/tf.js';

/**
 * Prefill time and decode speed of the tfjs decoder on a model the size of the embedded one
 * (4 layers, hidden 256, 8 query / 2 kv heads, vocab 256), per engine and policy. Prints a table.
 */
const config = parseModelConfig({
  model_type: 'llama', vocab_size: 256, hidden_size: 256, intermediate_size: 688, num_hidden_layers: 4,
  num_attention_heads: 8, num_key_value_heads: 2, max_position_embeddings: 2048, kvfold: { tokenizer: 'bytes' },
});
const PROMPT = Number(process.env.BENCH_PROMPT ?? 512);
const NEW = Number(process.env.BENCH_NEW ?? 64);
const tfjsSrc = fileURLToPath(new URL('../../backend-tfjs/src/index.ts', import.meta.url));

it('decode speed', async () => {
  const weights = randomWeights(config, 1, 0.05);
  const prompt = Array.from({ length: PROMPT }, (_, i) => (i * 37 + 11) % 256);
  const rows: string[] = ['engine | kernels | policy | prefill ms | decode tok/s | peak KiB | final KiB'];
  for (const engine of ['wasm', 'cpu'] as TestEngine[]) {
    let kernels: KVKernels<tf.Tensor>;
    let kernelsName = 'runtime-only (append)';
    if (existsSync(tfjsSrc)) {
      const mod = (await import('@kvfold/backend-tfjs')) as { createTfjsKernels: (o: { engine: string }) => Promise<KVKernels<tf.Tensor>> };
      kernels = await mod.createTfjsKernels({ engine });
      kernelsName = kernels.describe();
    } else {
      if (!(await useEngine(engine))) continue;
      kernels = minimalKernels();
    }
    const model = createModel({ config, weights, kernels, tokenizer: byteTokenizer() });
    const policies: [string, (() => KVCachePolicy) | undefined][] = [['none', undefined]];
    if (existsSync(tfjsSrc)) policies.push(['h2o', () => new H2OPolicy()], ['cam', () => new CaMPolicy()], ['kvmerger', () => new KVMergerPolicy()]);
    await generate({ model, prompt: prompt.slice(0, 32), maxNewTokens: 4 });
    for (const [name, make] of policies) {
      const r = await generate({ model, prompt, maxNewTokens: NEW, stopAtEos: false, ...(make ? { policy: make(), budget: 0.5 } : {}) });
      rows.push(`${engine} | ${kernelsName} | ${name} | ${r.timings.prefillMs.toFixed(0)} | ${r.timings.decodeTokensPerSecond.toFixed(1)} | ${(r.cache.peakBytes / 1024).toFixed(0)} | ${(r.cache.finalBytes / 1024).toFixed(0)}`);
    }
    model.dispose();
  }
  console.log(`\nprompt ${PROMPT} tokens, ${NEW} new tokens, ${config.layers} layers, hidden ${config.hiddenSize}\n${rows.join('\n')}`);
});
