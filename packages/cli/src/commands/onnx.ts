import { resolve } from 'node:path';
import { resolveModelFolder } from '@kvfold/bench';
import type { GroupReduction } from '@kvfold/core';
import { exportOnnx, exposeAttentionFile } from '@kvfold/onnx-export';
import { UsageError } from '../errors.js';
import type { CliIO } from '../io.js';

/** Options of `kvfold export-onnx`. */
export interface ExportOnnxCommandOptions {
  /** GQA reduction of attention_sums. */
  readonly groupReduction?: string;
  /** Also write onnx/model_proportional.onnx. */
  readonly proportional?: boolean;
  /** `auto`, `true` or `false`. */
  readonly externalData?: string;
  /** Replace an existing export. */
  readonly force?: boolean;
  /** Leave out the attention_sums outputs. */
  readonly attentionSums?: boolean;
}

const REDUCTIONS: readonly GroupReduction[] = ['mean', 'max', 'sum'];

function reduction(value: string | undefined): GroupReduction {
  const r = (value ?? 'mean') as GroupReduction;
  if (!REDUCTIONS.includes(r)) throw new UsageError(`--group-reduction ${JSON.stringify(value)} is not one of ${REDUCTIONS.join(', ')}`);
  return r;
}

function mib(n: number): string {
  return `${(n / 2 ** 20).toFixed(2)} MiB`;
}

/**
 * `kvfold export-onnx <checkpoint> <out>`: write the ONNX decoder folder transformers.js loads
 * (onnx/model.onnx, config.json, generation_config.json, tokenizer files), with attention_sums outputs.
 */
export async function exportOnnxCommand(checkpoint: string, out: string, o: ExportOnnxCommandOptions, io: CliIO): Promise<number> {
  const ext = o.externalData ?? 'auto';
  if (!['auto', 'true', 'false'].includes(ext)) throw new UsageError(`--external-data ${JSON.stringify(ext)} is not one of auto, true, false`);
  const folder = resolveModelFolder(checkpoint === 'embedded' ? 'embedded' : resolve(io.cwd, checkpoint));
  const target = resolve(io.cwd, out);
  const res = await exportOnnx(folder, target, {
    groupReduction: reduction(o.groupReduction),
    proportional: o.proportional === true,
    attentionSums: o.attentionSums !== false,
    externalData: ext === 'auto' ? 'auto' : ext === 'true',
    overwrite: o.force === true,
    onProgress: (e) => io.stderr.write(`kvfold: ${e.stage}: ${e.detail}\n`),
  });
  const c = res.config;
  io.stdout.write(
    [
      `exported ${c.modelType} (${c.layers} layers, ${c.heads}/${c.kvHeads} heads, head dim ${c.headDim}, ${mib(res.weightBytes)} of float32 weights) to ${res.folder}`,
      ...res.files.map((f) => `  ${f}`),
      `load it with transformers.js: env.allowRemoteModels = false; env.localModelPath = <parent folder>; AutoModelForCausalLM.from_pretrained(<folder name>)`,
    ].join('\n') + '\n',
  );
  return 0;
}

/** `kvfold onnx expose-attention <model.onnx> <out.onnx>`: add attention_sums outputs to a plain-op decoder graph. */
export async function exposeAttentionCommand(input: string, output: string, o: { readonly groupReduction?: string }, io: CliIO): Promise<number> {
  const res = await exposeAttentionFile(resolve(io.cwd, input), resolve(io.cwd, output), { groupReduction: reduction(o.groupReduction) });
  io.stdout.write(
    [
      `added attention_sums.0..${res.layers - 1} to ${res.output} (from Softmax nodes ${res.softmaxNodes.map((n) => JSON.stringify(n)).join(', ')})`,
      ...res.copied.map((f) => `  copied external data ${f}`),
    ].join('\n') + '\n',
  );
  return 0;
}
