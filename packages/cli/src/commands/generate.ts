import { resolve } from 'node:path';
import { createKVFold, resolveModelFolder, type ModelEngine } from '@kvfold/bench';
import { ConfigError, type KVCachePolicy } from '@kvfold/core';
import { generate, loadModel } from '@kvfold/runtime';
import { UsageError } from '../errors.js';
import { parseBudget, parsePositiveInt, type CliIO } from '../io.js';

/** Options of `kvfold generate`. */
export interface GenerateCommandOptions {
  /** Model folder (Hugging Face layout) or `embedded`. */
  readonly model: string;
  /** Prompt text. */
  readonly prompt: string;
  /** Cache policy name (default: none, the full cache). */
  readonly policy?: string;
  /** Policy options as JSON. */
  readonly options?: string;
  /** Budget ratio in (0, 1]. */
  readonly budget?: string;
  /** Most tokens to generate. */
  readonly maxTokens?: string;
  /** Sampling temperature (0 = greedy). */
  readonly temperature?: string;
  /** Seed. */
  readonly seed?: string;
  /** tfjs engine. */
  readonly engine?: string;
  /** Plugin packages. */
  readonly plugins?: readonly string[];
}

const ENGINES: readonly ModelEngine[] = ['auto', 'wasm', 'cpu', 'tensorflow'];

function kib(n: number): string {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(2)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}

/**
 * `kvfold generate`: load a model folder with @kvfold/runtime, stream a continuation of the prompt to
 * stdout with the chosen cache policy, then print tokens/s and cache bytes (and what the full cache
 * would hold) to stderr.
 */
export async function generateCommand(o: GenerateCommandOptions, io: CliIO): Promise<number> {
  const engine = (o.engine ?? 'auto') as ModelEngine;
  if (!ENGINES.includes(engine)) throw new UsageError(`--engine ${JSON.stringify(o.engine)} is not one of ${ENGINES.join(', ')}`);
  const maxNewTokens = o.maxTokens !== undefined ? parsePositiveInt(o.maxTokens, '--max-tokens') : 64;
  const budget = o.budget !== undefined ? parseBudget(o.budget) : undefined;
  const temperature = o.temperature !== undefined ? Number(o.temperature) : 0;
  if (!Number.isFinite(temperature) || temperature < 0) throw new UsageError(`--temperature ${JSON.stringify(o.temperature)} must be a number >= 0`);
  const seed = o.seed !== undefined ? Number(o.seed) : 0;
  if (!Number.isInteger(seed) || seed < 0) throw new UsageError(`--seed ${JSON.stringify(o.seed)} must be an integer >= 0`);
  if (budget !== undefined && o.policy === undefined) throw new UsageError('--budget needs --policy (without a policy the full cache is kept)');
  let options: Record<string, unknown> = {};
  if (o.options !== undefined) {
    try {
      options = JSON.parse(o.options) as Record<string, unknown>;
    } catch (e) {
      throw new ConfigError([{ path: '', rule: 'json', message: `--options is not valid JSON: ${(e as Error).message}` }], '--options');
    }
  }
  const kv = await createKVFold({ plugins: o.plugins ?? [], from: io.cwd });
  let policy: KVCachePolicy | undefined;
  if (o.policy !== undefined) policy = kv.policy(o.policy, options);
  const folder = resolveModelFolder(o.model === 'embedded' ? 'embedded' : resolve(io.cwd, o.model));
  const model = await loadModel(folder, { engine });
  try {
    const r = await generate({
      model,
      prompt: o.prompt,
      maxNewTokens,
      temperature,
      seed,
      ...(policy ? { policy, budget: budget ?? 0.5 } : {}),
      onToken: (e) => {
        if (e.text) io.stdout.write(e.text);
      },
    });
    io.stdout.write('\n');
    const { config } = model;
    const perPosition = config.layers * config.kvHeads * (2 * config.headDim * 4 + 3 * 4);
    const fullBytes = r.cache.positions * perPosition;
    const lines = [
      `prompt ${r.promptTokens} tokens, generated ${r.tokens.length} (${r.finishReason})`,
      `prefill ${r.timings.prefillMs.toFixed(1)} ms; decode ${r.timings.decodeTokensPerSecond.toFixed(1)} tokens/s over ${r.timings.decodeSteps} steps; total ${(r.timings.totalMs / 1000).toFixed(2)} s`,
      `cache: peak ${kib(r.cache.peakBytes)}, final ${kib(r.cache.finalBytes)} (${r.cache.lengths.join('/')} slots per layer); the full cache of ${r.cache.positions} positions would hold ${kib(fullBytes)} (final = ${((100 * r.cache.finalBytes) / fullBytes).toFixed(1)}%)`,
      policy ? `policy ${policy.name} at budget ${budget ?? 0.5} (${r.cache.budget} slots)` : 'policy: none (full cache)',
      `model ${folder}: ${config.modelType}, ${config.layers} layers, ${config.heads}/${config.kvHeads} heads; kernels ${model.kernels.describe()}`,
    ];
    io.stderr.write(`${lines.map((l) => `kvfold: ${l}`).join('\n')}\n`);
    return 0;
  } finally {
    model.dispose();
  }
}
