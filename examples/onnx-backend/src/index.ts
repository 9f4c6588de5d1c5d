/**
 * @packageDocumentation
 * kvfold onnx-backend example: the same KVMerger compression of one generated cache on the ONNX Runtime
 * backend and on the reference backend (the ground truth), with the execution provider and kernel path in use printed and the
 * two results compared element by element.
 */
import { parseArgs } from 'node:util';
import { KVFold, consoleLogger, resolveBudget, type Logger } from '@kvfold/core';
import reference from '@kvfold/backend-reference';
import onnx, { type OnnxBackendOptions, type OnnxKernels, type OnnxRuntimeInfo } from '@kvfold/backend-onnx';
import kvmerger from '@kvfold/policy-kvmerger';
import { compareLayers, prefillOn, syntheticLayer, type BackendRun } from '@kvfold/testkit';

export type { BackendRun } from '@kvfold/testkit';
export { compareLayers } from '@kvfold/testkit';

/** What {@link runOnnxExample} returns. */
export interface OnnxExampleResult {
  /** What ONNX Runtime runs on: version, execution provider after any fallback, kernel path, fallback reasons. */
  readonly info: OnnxRuntimeInfo;
  /** The run on ONNX Runtime. */
  readonly onnx: BackendRun;
  /** The same run on the reference backend. */
  readonly reference: BackendRun;
  /** Largest `|onnx - reference| / (1 + |reference|)` over keys, values and scores. */
  readonly maxDifference: number;
  /** Positions and counts agree exactly. */
  readonly sameSlots: boolean;
}

/** Options of {@link runOnnxExample}. */
export interface OnnxExampleOptions {
  /** Execution provider: `cpu` (default) or `cuda` (falls back to cpu, with the reason in `info.fallbacks`, when it cannot run). */
  readonly executionProvider?: 'cpu' | 'cuda';
  /** Native `ai.kvfold` kernels: `auto` (default: when built), `off`, or `require`. */
  readonly native?: OnnxBackendOptions['native'];
  /** Prompt length; default 512. */
  readonly length?: number;
  /** Budget ratio; default 0.35. */
  readonly budget?: number;
  /** Where kvfold reports the provider it picked and any fallback; default silent. */
  readonly logger?: Logger;
}

/** Run KVMerger on ONNX Runtime and on the reference backend over the same generated cache and compare. */
export async function runOnnxExample(options: OnnxExampleOptions = {}): Promise<OnnxExampleResult> {
  const length = options.length ?? 512;
  const kv = KVFold.create({ plugins: [reference, onnx, kvmerger], ...(options.logger ? { logger: options.logger } : {}) });
  // Through the registry, so the options are validated against the onnx backend's schema.
  const ort = (await kv.backend('onnx', { executionProvider: options.executionProvider ?? 'cpu', native: options.native ?? 'auto' })) as OnnxKernels;
  const ref = await kv.backend('reference');
  const data = syntheticLayer({ heads: 4, queryHeads: 8, length, headDim: 64, queries: 32, seed: 11 });
  const budget = resolveBudget(options.budget ?? 0.35, length);
  const onOnnx = await prefillOn(kv.policy('kvmerger'), ort, data, budget);
  const onReference = await prefillOn(kv.policy('kvmerger'), ref, data, budget);
  return { info: ort.info, onnx: onOnnx, reference: onReference, ...compareLayers(onOnnx.layer, onReference.layer) };
}

/** `--ep cpu|cuda --native auto|off|require`; an unknown flag or value exits with code 2 and the usage. */
function cliOptions(): { ep: 'cpu' | 'cuda'; native: NonNullable<OnnxBackendOptions['native']> } {
  const usage = 'usage: start [--ep cpu|cuda] [--native auto|off|require]';
  try {
    const { values } = parseArgs({ options: { ep: { type: 'string', default: 'cpu' }, native: { type: 'string', default: 'auto' } }, strict: true, allowPositionals: false });
    if (values.ep !== 'cpu' && values.ep !== 'cuda') throw new Error(`--ep ${JSON.stringify(values.ep)} is not one of cpu, cuda`);
    if (values.native !== 'auto' && values.native !== 'off' && values.native !== 'require') throw new Error(`--native ${JSON.stringify(values.native)} is not one of auto, off, require`);
    return { ep: values.ep, native: values.native };
  } catch (e) {
    console.error(`${(e as Error).message}\n${usage}`);
    process.exit(2);
  }
}

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) {
  const { ep, native } = cliOptions();
  const r = await runOnnxExample({ executionProvider: ep, native, logger: consoleLogger('info') });
  console.log(`\nKVMerger (default options), 4 kv heads / 8 query heads, 512 tokens, head dim 64, budget 35%\n`);
  console.log(`onnxruntime-node ${r.info.onnxruntimeNode}; execution provider in use: ${r.info.executionProvider}; ai.kvfold ops: ${r.info.kernelPath}; observe: ${r.info.observePath}`);
  if (r.info.fallbacks.length > 0) console.log(`fallbacks: ${r.info.fallbacks.join('; ')}`);
  console.log('| backend | what ran | slots kept / head | merged slots | observe + prefill ms (one run) |');
  console.log('|---|---|---:|---:|---:|');
  for (const [name, run] of [['onnx', r.onnx], ['reference', r.reference]] as const) console.log(`| ${name} | ${run.describe} | ${run.kept} | ${run.mergedSlots} | ${run.ms.toFixed(1)} |`);
  console.log(`\npositions and counts identical: ${r.sameSlots}; largest |onnx - reference| / (1 + |reference|): ${r.maxDifference.toExponential(2)}`);
}
