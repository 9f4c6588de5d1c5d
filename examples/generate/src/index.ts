/**
 * @packageDocumentation
 * kvfold generate example: the project's embedded model (@kvfold/model-tiny) reads a long passkey prompt
 * and answers the question twice with @kvfold/runtime: once with the full KV cache, once with KVMerger
 * keeping 35% of the prompt's slots per layer. It prints both answers, the expected key and the caches.
 * The model is small and still being trained, so its answers may be wrong with either cache.
 */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KVFold, type Logger } from '@kvfold/core';
import kvmerger from '@kvfold/policy-kvmerger';
import { generate, loadModel, type GenerateResult, type TfjsEngine } from '@kvfold/runtime';
import { modelTinyPath, passkeySample } from '@kvfold/model-tiny';

/** Options of {@link runGenerate}. */
export interface GenerateExampleOptions {
  /** Prompt length in bytes (= tokens, plus BOS); default 1024. */
  readonly length?: number;
  /** Depth of the passkey in the filler, in [0, 1]; default 0.5. */
  readonly depth?: number;
  /** Seed of the prompt; default 1. */
  readonly seed?: number;
  /** KVMerger's budget as a ratio of the prompt; default 0.35. */
  readonly budget?: number;
  /** Most tokens to generate; default 8 (a 5-digit key, a period, EOS). */
  readonly maxNewTokens?: number;
  /** tfjs engine; default `auto`. */
  readonly engine?: TfjsEngine;
  /** Model folder; default the weights bundled in @kvfold/model-tiny. */
  readonly modelDir?: string;
  /** Where kvfold reports; default silent. */
  readonly logger?: Logger;
}

/** One answer. */
export interface Answer {
  /** `full cache` or `kvmerger 35%`. */
  readonly label: string;
  /** Generated text, cut at the first period. */
  readonly text: string;
  /** The generated text starts with the key. */
  readonly correct: boolean;
  /** The runtime's full result (timings, cache sizes). */
  readonly result: GenerateResult;
}

/** What {@link runGenerate} returns. */
export interface GenerateExampleResult {
  /** The key hidden in the prompt. */
  readonly key: string;
  /** Prompt tokens (BOS included). */
  readonly promptTokens: number;
  /** Training steps of the weights that answered (from config.json), when recorded. */
  readonly trainedSteps: number | undefined;
  /** What the tfjs kernels run on. */
  readonly engine: string;
  /** The full-cache answer, then KVMerger's. */
  readonly answers: readonly [Answer, Answer];
}

/** Load the model once and answer the same passkey prompt with the full cache and with KVMerger. */
export async function runGenerate(options: GenerateExampleOptions = {}): Promise<GenerateExampleResult> {
  const dir = options.modelDir ?? modelTinyPath;
  const sample = passkeySample({ length: options.length ?? 1024, depth: options.depth ?? 0.5, seed: options.seed ?? 1 });
  const model = await loadModel(dir, { engine: options.engine ?? 'auto' });
  const kv = KVFold.create({ plugins: [kvmerger], ...(options.logger ? { logger: options.logger } : {}) });
  const budget = options.budget ?? 0.35;
  const common = { model, prompt: sample.prompt, maxNewTokens: options.maxNewTokens ?? 8, stop: ['.'], ...(options.logger ? { logger: options.logger } : {}) };
  try {
    const answer = (label: string, result: GenerateResult): Answer => ({ label, text: result.text, correct: result.text.trim().startsWith(sample.answer), result });
    const full = answer('full cache', await generate(common));
    const merged = answer(`kvmerger ${Math.round(budget * 100)}%`, await generate({ ...common, policy: kv.policy('kvmerger'), budget }));
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { kvfold?: { trained_steps?: number } };
    return { key: sample.answer, promptTokens: full.result.promptTokens, trainedSteps: config.kvfold?.trained_steps, engine: model.kernels.describe(), answers: [full, merged] };
  } finally {
    model.dispose();
  }
}

/** Render the result for the terminal. */
export function formatGenerate(r: GenerateExampleResult): string {
  const lines = [
    `model-tiny${r.trainedSteps !== undefined ? ` after ${r.trainedSteps} training steps` : ''}, ${r.engine}`,
    `prompt: ${r.promptTokens} tokens ending "... What is the pass key? The pass key is"; the key is ${r.key}\n`,
    '| cache | answer | correct | KV slots per layer at the end | peak cache | prefill ms | decode tokens/s |',
    '|---|---|:---:|---|---:|---:|---:|',
  ];
  for (const a of r.answers) {
    const c = a.result.cache;
    lines.push(`| ${a.label} | ${JSON.stringify(a.text)} | ${a.correct ? 'yes' : 'no'} | ${c.lengths.join(', ')} | ${(c.peakBytes / 1024).toFixed(0)} KiB | ${a.result.timings.prefillMs.toFixed(0)} | ${a.result.timings.decodeTokensPerSecond.toFixed(1)} |`);
  }
  return lines.join('\n');
}

/** `--length N --seed N`; an unknown flag or a value that is not a whole number exits with code 2 and the usage. */
function cliOptions(): { length?: number; seed?: number } {
  const usage = 'usage: start [--length <bytes, >= 64>] [--seed <integer >= 0>]';
  try {
    const { values } = parseArgs({ options: { length: { type: 'string' }, seed: { type: 'string' } }, strict: true, allowPositionals: false });
    const int = (name: 'length' | 'seed', min: number): number | undefined => {
      const v = values[name];
      if (v === undefined) return undefined;
      if (!/^\d+$/.test(v) || Number(v) < min) throw new Error(`--${name} ${JSON.stringify(v)} must be an integer >= ${min}`);
      return Number(v);
    };
    const length = int('length', 64);
    const seed = int('seed', 0);
    return { ...(length !== undefined ? { length } : {}), ...(seed !== undefined ? { seed } : {}) };
  } catch (e) {
    console.error(`${(e as Error).message}\n${usage}`);
    process.exit(2);
  }
}

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) {
  const { length, seed } = cliOptions();
  console.log(formatGenerate(await runGenerate({ ...(length !== undefined ? { length } : {}), ...(seed !== undefined ? { seed } : {}) })));
  console.log('\nThe embedded model is small and trained by this project (see packages/model-tiny/weights/MODEL_CARD.md); a wrong answer with both caches is the model, not the policy.');
}
