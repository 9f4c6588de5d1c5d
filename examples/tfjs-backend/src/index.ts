/**
 * @packageDocumentation
 * kvfold tfjs-backend example: the same KVMerger compression of one generated cache on the TensorFlow.js
 * backend and on the reference backend (the ground truth), with the tfjs engine in use printed and the
 * two results compared element by element.
 */
import { parseArgs } from 'node:util';
import { KVFold, consoleLogger, resolveBudget, type Logger } from '@kvfold/core';
import reference from '@kvfold/backend-reference';
import tfjs, { ENGINE_CHOICES, type TfjsEngineChoice, type TfjsKernels } from '@kvfold/backend-tfjs';
import kvmerger from '@kvfold/policy-kvmerger';
import { compareLayers, prefillOn, syntheticLayer, type BackendRun } from '@kvfold/testkit';

export type { BackendRun } from '@kvfold/testkit';
export { compareLayers } from '@kvfold/testkit';

/** What {@link runTfjsExample} returns. */
export interface TfjsExampleResult {
  /** The tfjs engine that ran: `wasm`, `cpu` or `tensorflow`. */
  readonly engine: string;
  /** wasm only: whether the SIMD build ran. */
  readonly simd: boolean | undefined;
  /** The run on tfjs. */
  readonly tfjs: BackendRun;
  /** The same run on the reference backend. */
  readonly reference: BackendRun;
  /** Largest `|tfjs - reference| / (1 + |reference|)` over keys, values and scores. */
  readonly maxDifference: number;
  /** Positions and counts agree exactly. */
  readonly sameSlots: boolean;
}

/** Options of {@link runTfjsExample}. */
export interface TfjsExampleOptions {
  /** tfjs engine: `auto` (default), `wasm`, `cpu` or `tensorflow`. */
  readonly engine?: TfjsEngineChoice;
  /** Prompt length; default 512. */
  readonly length?: number;
  /** Budget ratio; default 0.35. */
  readonly budget?: number;
  /** Where kvfold reports the engine it picked; default silent. */
  readonly logger?: Logger;
}

/** Run KVMerger on tfjs and on the reference backend over the same generated cache and compare. */
export async function runTfjsExample(options: TfjsExampleOptions = {}): Promise<TfjsExampleResult> {
  const length = options.length ?? 512;
  const kv = KVFold.create({ plugins: [reference, tfjs, kvmerger], ...(options.logger ? { logger: options.logger } : {}) });
  // Through the registry, so the options are validated against the tfjs backend's schema.
  const tf = (await kv.backend('tfjs', { engine: options.engine ?? 'auto' })) as TfjsKernels;
  const ref = await kv.backend('reference');
  const data = syntheticLayer({ heads: 4, queryHeads: 8, length, headDim: 64, queries: 32, seed: 11 });
  const budget = resolveBudget(options.budget ?? 0.35, length);
  const onTfjs = await prefillOn(kv.policy('kvmerger'), tf, data, budget);
  const onReference = await prefillOn(kv.policy('kvmerger'), ref, data, budget);
  return { engine: tf.engine, simd: tf.simd, tfjs: onTfjs, reference: onReference, ...compareLayers(onTfjs.layer, onReference.layer) };
}

/** The value of `--<name>`, one of `allowed`; an unknown flag or value exits with code 2 and says what is allowed. */
function choice<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
  try {
    const v = parseArgs({ options: { [name]: { type: 'string' } }, strict: true, allowPositionals: false }).values[name] ?? fallback;
    if (!(allowed as readonly string[]).includes(v as string)) throw new Error(`--${name} ${JSON.stringify(v)} is not one of ${allowed.join(', ')}`);
    return v as T;
  } catch (e) {
    console.error(`${(e as Error).message}\nusage: start [--${name} ${allowed.join('|')}]`);
    process.exit(2);
  }
}

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) {
  const engine = choice('engine', ENGINE_CHOICES, 'auto');
  const r = await runTfjsExample({ engine, logger: consoleLogger('info') });
  console.log(`\nKVMerger (default options), 4 kv heads / 8 query heads, 512 tokens, head dim 64, budget 35%\n`);
  console.log(`tfjs engine in use: ${r.engine}${r.simd === undefined ? '' : ` (SIMD ${r.simd ? 'on' : 'off'})`}`);
  console.log('| backend | what ran | slots kept / head | merged slots | observe + prefill ms (one run) |');
  console.log('|---|---|---:|---:|---:|');
  for (const [name, run] of [['tfjs', r.tfjs], ['reference', r.reference]] as const) console.log(`| ${name} | ${run.describe} | ${run.kept} | ${run.mergedSlots} | ${run.ms.toFixed(1)} |`);
  console.log(`\npositions and counts identical: ${r.sameSlots}; largest |tfjs - reference| / (1 + |reference|): ${r.maxDifference.toExponential(2)}`);
}
