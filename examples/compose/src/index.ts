/**
 * @packageDocumentation
 * kvfold compose example: one JSON config names a plugin package (the third-party TOVA policy), a
 * backend (TensorFlow.js, itself loaded as a plugin package) and a policy with its budget and options.
 * kvfold loads the plugins from this project's node_modules, validates the config against the schema
 * composed from everything they registered, creates the backend and the policy, and the program runs
 * them on a generated cache: prefill, then decode steps.
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, KVFold, readJsonFile, consoleLogger, createContext, disposeLayer, hostTensor, layerFromHost, layerTensors, layerToHost, resolveBudget, type KVFoldConfig, type Logger } from '@kvfold/core';
import { syntheticLayer } from '@kvfold/testkit';

/** This example's folder: the "user project" whose node_modules the plugins are resolved from. */
export const exampleDir: string = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Options of {@link runConfig}. */
export interface ComposeOptions {
  /** Folder plugins are resolved from; default {@link exampleDir}. */
  readonly from?: string;
  /** Prompt length of the generated cache; default 256. */
  readonly length?: number;
  /** Decode steps after the prefill; default 8. */
  readonly steps?: number;
  /** Where kvfold reports (plugins registered, backend chosen); default silent. */
  readonly logger?: Logger;
}

/** What {@link runConfig} did. */
export interface ComposeResult {
  /** The validated config, defaults filled in. */
  readonly config: KVFoldConfig;
  /** Plugins registered, in load order. */
  readonly plugins: readonly string[];
  /** `describe()` of the backend: engine and what actually runs. */
  readonly backend: string;
  /** Resolved budget in slots. */
  readonly budget: number;
  /** Prompt length. */
  readonly promptLength: number;
  /** Slots per head after the prefill. */
  readonly prefillLength: number;
  /** Positions kept on head 0 after the prefill. */
  readonly keptPositions: readonly number[];
  /** Slots per head after each decode step. */
  readonly stepLengths: readonly number[];
  /** Positions on head 0 after the last step. */
  readonly finalPositions: readonly number[];
}

/**
 * Read a JSON config file with core's reader: a missing file is a `NotFoundError`, a syntax error a
 * `ConfigError` naming the file, line and column.
 */
export function readConfig(path: string): unknown {
  return readJsonFile(path, { what: 'config file' });
}

/**
 * Load the config's plugins, validate it, create its backend and policy, and run the policy on a
 * generated cache: one prefill, then `steps` decode steps of one token each.
 * @throws ConfigError naming every invalid field; UnknownPluginError and the other plugin errors naming the package.
 */
export async function runConfig(document: unknown, options: ComposeOptions = {}): Promise<ComposeResult> {
  const kv = KVFold.create(options.logger ? { logger: options.logger } : {});
  // configure() = loadPlugins(config.plugins) + validate(config) + backend() + policy().
  const { config, policy, kernels } = await kv.configure(document, { from: options.from ?? exampleDir });
  const length = options.length ?? 256;
  const steps = options.steps ?? 8;
  const heads = 2;
  const queryHeads = 4;
  const headDim = 32;
  const seed = config.seed ?? 0;
  const reduction = { groupReduction: config.groupReduction ?? 'mean' } as const;
  const budget = resolveBudget(config.policy.budget, length);
  const data = syntheticLayer({ heads, queryHeads, length, headDim, seed });
  const more = syntheticLayer({ heads, queryHeads, length: steps, headDim, seed: seed + 1, queries: steps });

  let layer = layerFromHost(kernels, data.layer);
  const q = kernels.fromHost(data.queries);
  const qp = kernels.fromHost(data.queryPositions);
  const seen = kernels.observe(layer, q, qp, reduction);
  let next = await policy.prefill(layer, { ...seen, queries: q }, createContext({ kernels, budget, promptLength: length, seed }));
  kernels.dispose(q, qp, seen.attention, seen.lastAttention);
  disposeLayer(kernels, layer, next);
  layer = next;
  const afterPrefill = await layerToHost(kernels, layer);
  const prefillLength = afterPrefill.positions.shape[1]!;

  // Each decode step appends the new token's key and value at the next true position, observes it, calls step.
  const row = (t: Float32Array, rowsN: number, s: number) => {
    const out = new Float32Array(rowsN * headDim);
    for (let r = 0; r < rowsN; r++) out.set(t.subarray((r * steps + s) * headDim, (r * steps + s + 1) * headDim), r * headDim);
    return out;
  };
  const stepLengths: number[] = [];
  for (let s = 0; s < steps; s++) {
    const pos = length + s;
    const nk = kernels.fromHost(hostTensor('float32', [heads, 1, headDim], row(more.layer.keys.data, heads, s)));
    const nv = kernels.fromHost(hostTensor('float32', [heads, 1, headDim], row(more.layer.values.data, heads, s)));
    const np = kernels.fromHost(hostTensor('int32', [heads, 1], new Int32Array(heads).fill(pos)));
    const grown = kernels.append(layer, nk, nv, np);
    const inGrown = new Set(layerTensors(grown));
    kernels.dispose(...[nk, nv, np].filter((t) => !inGrown.has(t)));
    disposeLayer(kernels, layer, grown);
    const sq = kernels.fromHost(hostTensor('float32', [queryHeads, 1, headDim], row(more.queries.data, queryHeads, s)));
    const sp = kernels.fromHost(hostTensor('int32', [1], [pos]));
    const o = kernels.observe(grown, sq, sp, reduction);
    next = await policy.step(grown, { ...o, queries: sq }, createContext({ kernels, budget, promptLength: length, step: s + 1, seed }));
    kernels.dispose(sq, sp, o.attention, o.lastAttention);
    disposeLayer(kernels, grown, next);
    layer = next;
    stepLengths.push(kernels.shapeOf(layer.keys)[1]!);
  }
  const final = await layerToHost(kernels, layer);
  disposeLayer(kernels, layer);
  const head0 = (positions: Int32Array, n: number) => Array.from(positions.subarray(0, n));
  return {
    config,
    plugins: kv.plugins(),
    backend: kernels.describe(),
    budget,
    promptLength: length,
    prefillLength,
    keptPositions: head0(afterPrefill.positions.data, prefillLength),
    stepLengths,
    finalPositions: head0(final.positions.data, final.positions.shape[1]!),
  };
}

/** Render a result for the terminal. */
export function formatResult(r: ComposeResult): string {
  const short = (p: readonly number[]) => (p.length > 24 ? `${p.slice(0, 12).join(' ')} ... ${p.slice(-8).join(' ')}` : p.join(' '));
  return [
    `plugins loaded:  ${r.plugins.join(', ')}`,
    `backend:         ${r.config.backend?.name ?? 'reference'} ${JSON.stringify(r.config.backend?.options ?? {})} -> ${r.backend}`,
    `policy:          ${r.config.policy.name} ${JSON.stringify(r.config.policy.options ?? {})}, budget ${JSON.stringify(r.config.policy.budget)} = ${r.budget} of ${r.promptLength} slots`,
    `seed ${r.config.seed}, GQA reduction ${r.config.groupReduction}`,
    `after prefill:   ${r.prefillLength} slots per head; head 0 keeps positions ${short(r.keptPositions)}`,
    `decode steps:    slots per head ${r.stepLengths.join(', ')}`,
    `after the steps: head 0 holds ${short(r.finalPositions)}`,
  ].join('\n');
}

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) {
  const path = resolve(process.argv[2] ?? resolve(exampleDir, 'kvfold.config.json'));
  console.log(`config: ${path}\n`);
  try {
    console.log(formatResult(await runConfig(readConfig(path), { logger: consoleLogger('warn') })));
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    // Every issue carries its JSON path, the rule and the allowed values; the message lists them all.
    console.log(e.message);
    process.exitCode = 1;
  }
}
