/**
 * @packageDocumentation
 * kvfold transformers.js example: the project's embedded model is exported to an ONNX decoder folder
 * (`@kvfold/onnx-export`, what `kvfold export-onnx embedded <folder>` writes), loaded from that local
 * folder by transformers.js with remote loading off, and asked a passkey question twice through
 * `@kvfold/transformers`: with the full KV cache and with KVMerger keeping 35% of the prompt's slots.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { AutoModelForCausalLM, AutoTokenizer, env } from '@huggingface/transformers';
import reference from '@kvfold/backend-reference';
import { KVFold } from '@kvfold/core';
import { modelTinyPath, passkeySample } from '@kvfold/model-tiny';
import { exportOnnx } from '@kvfold/onnx-export';
import kvmerger from '@kvfold/policy-kvmerger';
import { generateCompressed, type GenerateCompressedResult, type TransformersModelLike, type TransformersTokenizerLike } from '@kvfold/transformers';

/** Options of {@link runTransformersJs}. */
export interface TransformersJsExampleOptions {
  /** Prompt length in bytes (= tokens, plus BOS); default 1024. */
  readonly length?: number;
  /** Depth of the passkey in the filler, in [0, 1]; default 0.5. */
  readonly depth?: number;
  /** Seed of the prompt; default 1. */
  readonly seed?: number;
  /** KVMerger's budget as a ratio of the prompt; default 0.35. */
  readonly budget?: number;
  /** Most tokens to generate; default 8. */
  readonly maxNewTokens?: number;
  /** An exported folder to load instead of exporting the embedded model to a temporary one. */
  readonly folder?: string;
}

/** One answer. */
export interface TransformersJsAnswer {
  /** `full cache` or `kvmerger 35%`. */
  readonly label: string;
  /** Generated text, cut at the first period. */
  readonly text: string;
  /** The generated text starts with the key. */
  readonly correct: boolean;
  /** The adapter's full result (timings, cache sizes). */
  readonly result: GenerateCompressedResult;
}

/** What {@link runTransformersJs} returns. */
export interface TransformersJsExampleResult {
  /** The key hidden in the prompt. */
  readonly key: string;
  /** Prompt tokens (BOS included). */
  readonly promptTokens: number;
  /** The folder transformers.js loaded. */
  readonly folder: string;
  /** The full-cache answer, then KVMerger's. */
  readonly answers: readonly [TransformersJsAnswer, TransformersJsAnswer];
}

/** Export (unless given a folder), load with transformers.js, and answer with both caches. */
export async function runTransformersJs(options: TransformersJsExampleOptions = {}): Promise<TransformersJsExampleResult> {
  const tmp = options.folder ? undefined : await mkdtemp(join(tmpdir(), 'kvfold-tjs-example-'));
  const folder = options.folder ?? join(tmp!, 'model-tiny-onnx');
  try {
    if (!options.folder) await exportOnnx(modelTinyPath, folder);
    // Everything comes from the local folder; transformers.js never goes to the network.
    env.allowRemoteModels = false;
    env.localModelPath = dirname(folder);
    const tokenizer = (await AutoTokenizer.from_pretrained(basename(folder))) as unknown as TransformersTokenizerLike;
    const model = (await AutoModelForCausalLM.from_pretrained(basename(folder))) as unknown as TransformersModelLike;
    const kv = KVFold.create({ plugins: [reference, kvmerger] });
    const kernels = await kv.backend('reference');
    const sample = passkeySample({ length: options.length ?? 1024, depth: options.depth ?? 0.5, seed: options.seed ?? 1 });
    const budget = options.budget ?? 0.35;
    const common = { model, tokenizer, kernels, prompt: sample.prompt, maxNewTokens: options.maxNewTokens ?? 8, stop: ['.'] };
    const answer = (label: string, result: GenerateCompressedResult): TransformersJsAnswer => ({ label, text: result.text, correct: result.text.trim().startsWith(sample.answer), result });
    const full = answer('full cache', await generateCompressed(common));
    const merged = answer(`kvmerger ${Math.round(budget * 100)}%`, await generateCompressed({ ...common, policy: kv.policy('kvmerger'), budget }));
    return { key: sample.answer, promptTokens: full.result.promptTokens, folder, answers: [full, merged] };
  } finally {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }
}

/** Render the result for the terminal. */
export function formatTransformersJs(r: TransformersJsExampleResult): string {
  const lines = [
    `transformers.js (onnxruntime-node) running the exported embedded model; kvfold policy kernels: reference`,
    `prompt: ${r.promptTokens} tokens ending "... What is the pass key? The pass key is"; the key is ${r.key}\n`,
    '| cache | answer | correct | KV slots per layer at the end | final cache | peak cache | decode tokens/s |',
    '|---|---|:---:|---|---:|---:|---:|',
  ];
  for (const a of r.answers) {
    const c = a.result.cache;
    lines.push(`| ${a.label} | ${JSON.stringify(a.text)} | ${a.correct ? 'yes' : 'no'} | ${c.lengths.join(', ')} | ${(c.finalBytes / 1024).toFixed(0)} KiB | ${(c.peakBytes / 1024).toFixed(0)} KiB | ${a.result.timings.decodeTokensPerSecond.toFixed(1)} |`);
  }
  return lines.join('\n');
}

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const length = arg('length');
  const folder = arg('folder');
  console.log(formatTransformersJs(await runTransformersJs({ ...(length !== undefined ? { length: Number(length) } : {}), ...(folder !== undefined ? { folder } : {}) })));
  console.log('\nThe embedded model is small and trained by this project (see packages/model-tiny/weights/MODEL_CARD.md); a wrong answer with both caches is the model, not the policy.');
}
