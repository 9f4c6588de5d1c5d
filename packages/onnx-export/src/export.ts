import { copyFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ConfigError, ModelError, type GroupReduction } from '@kvfold/core';
import { loadCheckpoint, type LlamaConfig } from '@kvfold/runtime';
import { buildDecoderGraph, type AttentionLayout } from './decoder-graph.js';
import { exists, writeAtomic } from './files.js';
import { byteTokenizerFiles } from './tokenizer-files.js';

/** A step of {@link exportOnnx}, for progress display. */
export interface ExportProgress {
  /** What is being done. */
  readonly stage: 'load' | 'graph' | 'write' | 'done';
  /** Human-readable detail (file name, tensor count). */
  readonly detail: string;
}

/** Options of {@link exportOnnx}. */
export interface ExportOptions {
  /** Attention layout; `plain` writes an Optimum-style graph without kvfold's extras (test fixtures). Default `kvfold`. */
  readonly layout?: AttentionLayout;
  /** Add the `attention_sums.{i}` outputs. Default true (kvfold layout). */
  readonly attentionSums?: boolean;
  /** GQA group reduction of `attention_sums`. Default `mean`. */
  readonly groupReduction?: GroupReduction;
  /**
   * Also write `onnx/model_proportional.onnx`, the same decoder with the `past_log_counts.{i}` inputs
   * (proportional attention for merged slots). transformers.js's own `generate` does not feed those inputs,
   * so the plain `model.onnx` stays the default file. Default false.
   */
  readonly proportional?: boolean;
  /**
   * Put weights in `onnx/model.onnx_data` (ONNX external data) instead of inside the model: `true`,
   * `false`, or `auto` (default) when the weights exceed 1.5 GiB — protobuf cannot hold 2 GiB.
   */
  readonly externalData?: boolean | 'auto';
  /** Replace an existing `onnx/model.onnx` in the output folder. Default false. */
  readonly overwrite?: boolean;
  /** Called at each step. */
  readonly onProgress?: (event: ExportProgress) => void;
}

/** What {@link exportOnnx} wrote. */
export interface ExportResult {
  /** Output folder. */
  readonly folder: string;
  /** Files written, relative to the folder. */
  readonly files: string[];
  /** The model configuration. */
  readonly config: LlamaConfig;
  /** Bytes of the weights. */
  readonly weightBytes: number;
  /** Whether weights went to external data. */
  readonly externalData: boolean;
}

/** Files of a Hugging Face tokenizer copied as they are when the checkpoint has them. */
export const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'tokenizer.model',
  'vocab.json',
  'merges.txt',
  'added_tokens.json',
  'chat_template.jinja',
  'chat_template.json',
] as const;

const EXTERNAL_AUTO_BYTES = 1.5 * 2 ** 30;

function checkOptions(o: ExportOptions): void {
  const issues = [];
  if (o.layout !== undefined && o.layout !== 'kvfold' && o.layout !== 'plain') issues.push({ path: '/layout', rule: 'enum', message: `must be "kvfold" or "plain", got ${JSON.stringify(o.layout)}`, allowed: ['kvfold', 'plain'] });
  if (o.groupReduction !== undefined && !['mean', 'max', 'sum'].includes(o.groupReduction)) {
    issues.push({ path: '/groupReduction', rule: 'enum', message: `must be "mean", "max" or "sum", got ${JSON.stringify(o.groupReduction)}`, allowed: ['mean', 'max', 'sum'] });
  }
  if (o.externalData !== undefined && o.externalData !== 'auto' && typeof o.externalData !== 'boolean') {
    issues.push({ path: '/externalData', rule: 'enum', message: `must be true, false or "auto", got ${JSON.stringify(o.externalData)}`, allowed: [true, false, 'auto'] });
  }
  if (o.layout === 'plain' && (o.proportional || o.attentionSums)) {
    issues.push({ path: '/layout', rule: 'const', message: 'the plain layout has neither attention_sums nor past_log_counts; use the kvfold layout', allowed: ['kvfold'] });
  }
  if (issues.length > 0) throw new ConfigError(issues, 'export-onnx options');
}

/**
 * Export a checkpoint folder `@kvfold/runtime` loads (Llama, Mistral, Qwen2: `config.json` + safetensors)
 * to an ONNX decoder folder in the layout transformers.js loads: `onnx/model.onnx` (plus
 * `onnx/model.onnx_data` for large models), `config.json` with a `transformers.js_config` section,
 * `generation_config.json`, and the tokenizer files (copied, or generated for byte-level checkpoints).
 * @throws ConfigError for invalid options or config.json; ModelError for a broken checkpoint or an
 *   output folder that already holds an export (without `overwrite`).
 */
export async function exportOnnx(checkpointFolder: string, outFolder: string, options: ExportOptions = {}): Promise<ExportResult> {
  checkOptions(options);
  const progress = options.onProgress ?? (() => undefined);
  const modelPath = join(outFolder, 'onnx', 'model.onnx');
  if (!options.overwrite && (await exists(modelPath))) {
    throw new ModelError(`${modelPath} already exists; choose another output folder or pass overwrite (--force)`, { file: modelPath, reason: 'exists' });
  }
  const { config, json: raw, weights } = await loadCheckpoint(checkpointFolder, (config) =>
    progress({ stage: 'load', detail: `${config.modelType}: ${config.layers} layers, ${config.heads} heads (${config.kvHeads} kv), head dim ${config.headDim}` }),
  );

  const layout = options.layout ?? 'kvfold';
  const groupReduction = options.groupReduction ?? 'mean';
  const attentionSums = layout === 'kvfold' && (options.attentionSums ?? true);
  const graphOptions = { layout, attentionSums, groupReduction };
  progress({ stage: 'graph', detail: 'onnx/model.onnx' });
  const graph = buildDecoderGraph(config, weights, graphOptions);
  const weightBytes = graph.initializerBytes();
  const external = options.externalData === true || ((options.externalData ?? 'auto') === 'auto' && weightBytes > EXTERNAL_AUTO_BYTES);

  await mkdir(dirname(modelPath), { recursive: true });
  const files: string[] = [];
  if (external) {
    const built = graph.buildExternal({ location: 'model.onnx_data' });
    progress({ stage: 'write', detail: `onnx/model.onnx_data (${(built.dataBytes / 2 ** 20).toFixed(1)} MiB)` });
    await writeAtomic(join(outFolder, 'onnx', 'model.onnx_data'), built.data);
    await writeAtomic(modelPath, built.model);
    files.push('onnx/model.onnx', 'onnx/model.onnx_data');
  } else {
    progress({ stage: 'write', detail: `onnx/model.onnx (${(weightBytes / 2 ** 20).toFixed(1)} MiB of weights)` });
    await writeAtomic(modelPath, graph.build());
    files.push('onnx/model.onnx');
  }
  if (options.proportional) {
    progress({ stage: 'graph', detail: 'onnx/model_proportional.onnx' });
    const prop = buildDecoderGraph(config, weights, { ...graphOptions, logCounts: true, name: 'kvfold_decoder_proportional' });
    const path = join(outFolder, 'onnx', 'model_proportional.onnx');
    // Same initializers in the same order, so the proportional graph reads the data file already written.
    await writeAtomic(path, external ? prop.buildExternal({ location: 'model.onnx_data' }).model : prop.build());
    files.push('onnx/model_proportional.onnx');
  }

  const tjsConfig: Record<string, unknown> = { dtype: 'fp32' };
  // Per file: model_proportional.onnx names the shared data file in its own tensors (Node's ORT reads it from there).
  if (external) tjsConfig.use_external_data_format = { 'model.onnx': 1 };
  const outConfig = {
    ...raw,
    'transformers.js_config': { ...((raw['transformers.js_config'] as object | undefined) ?? {}), ...tjsConfig },
    kvfold_onnx: {
      exporter: '@kvfold/onnx-export',
      layout,
      attention_sums: attentionSums ? { group_reduction: groupReduction } : null,
      proportional_file: options.proportional ? 'model_proportional' : null,
    },
  };
  await writeAtomic(join(outFolder, 'config.json'), JSON.stringify(outConfig, null, 2) + '\n');
  files.push('config.json');

  const genSrc = join(checkpointFolder, 'generation_config.json');
  if (await exists(genSrc)) {
    await copyFile(genSrc, join(outFolder, 'generation_config.json'));
  } else {
    const gen: Record<string, unknown> = { _from_model_config: true };
    if (config.bosTokenId !== undefined) gen.bos_token_id = config.bosTokenId;
    if (config.eosTokenIds.length > 0) gen.eos_token_id = config.eosTokenIds.length === 1 ? config.eosTokenIds[0] : [...config.eosTokenIds];
    await writeAtomic(join(outFolder, 'generation_config.json'), JSON.stringify(gen, null, 2) + '\n');
  }
  files.push('generation_config.json');

  if (config.tokenizer === 'bytes') {
    const special = ((raw.kvfold as { special_tokens?: { bos?: unknown; eos?: unknown } } | undefined)?.special_tokens ?? {}) as { bos?: unknown; eos?: unknown };
    const bos = typeof special.bos === 'number' ? special.bos : undefined;
    const eos = typeof special.eos === 'number' ? special.eos : config.eosTokenIds[0];
    const { tokenizer, tokenizerConfig } = byteTokenizerFiles(config.vocabSize, { ...(bos !== undefined ? { bos } : {}), ...(eos !== undefined ? { eos } : {}) }, config.maxPositionEmbeddings);
    await writeAtomic(join(outFolder, 'tokenizer.json'), JSON.stringify(tokenizer) + '\n');
    await writeAtomic(join(outFolder, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig, null, 2) + '\n');
    files.push('tokenizer.json', 'tokenizer_config.json');
  } else {
    let any = false;
    for (const f of TOKENIZER_FILES) {
      if (!(await exists(join(checkpointFolder, f)))) continue;
      await copyFile(join(checkpointFolder, f), join(outFolder, f));
      files.push(f);
      any = true;
    }
    if (!any) throw new ModelError(`${checkpointFolder}: no tokenizer files (${TOKENIZER_FILES.join(', ')}) to copy; transformers.js needs tokenizer.json`, { folder: checkpointFolder, reason: 'missing' });
  }
  progress({ stage: 'done', detail: `${files.length} files in ${outFolder}` });
  return { folder: outFolder, files, config, weightBytes, externalData: external };
}
