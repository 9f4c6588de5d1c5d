import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { BackendUnavailableError, type Budget, type GroupReduction, type HostTensor, type KVCachePolicy } from '@kvfold/core';
import type { CompressedSession, TransformersModelLike } from '@kvfold/transformers';

/**
 * The benchmark's transformers.js runtime: the bench model exported once per process with
 * `@kvfold/onnx-export` to a temporary folder, loaded by transformers.js from it (remote loading off),
 * and driven through `@kvfold/transformers` with policies on the reference backend. transformers.js is
 * imported only when a run asks for this runtime.
 * @module
 */

/** The optional peer dependencies of `@kvfold/bench` that its `transformers.js` runtime imports. */
export const TRANSFORMERS_PEERS = ['@kvfold/transformers', '@huggingface/transformers'] as const;

/**
 * How to install the `transformers.js` runtime's packages. `@huggingface/transformers` depends on
 * onnxruntime-node, whose install script downloads CUDA provider files on linux-x64 and fails without
 * internet access; skipping it keeps the bundled CPU execution provider, which is all this runtime uses.
 */
export const TRANSFORMERS_INSTALL_HINT =
  'install them next to @kvfold/bench with `npm install @kvfold/transformers @huggingface/transformers@^4.3.1`; ' +
  'on a machine without internet access skip onnxruntime-node\'s CUDA download with ' +
  '`ONNXRUNTIME_NODE_INSTALL=skip npm install @kvfold/transformers @huggingface/transformers@^4.3.1`';

/** The package an import failed to find, when the failure is a missing package (Node's and Vite's wordings). */
export function missingPackage(error: unknown): string | undefined {
  const message = error instanceof Error ? error.message : '';
  return /Cannot find (?:package|module) '((?:@[^/'\s]+\/)?[^/'\s]+)/.exec(message)?.[1] ?? /Failed to (?:load url|resolve import) "?((?:@[^/"\s]+\/)?[^/"\s]+)/.exec(message)?.[1];
}

/**
 * Import one of the `transformers.js` runtime's optional peers.
 * @throws BackendUnavailableError naming the missing package and how to install it (offline too) when it,
 *   or the other peer it imports, is not installed; other import errors as they are.
 */
export async function importTransformersPeer<M>(name: (typeof TRANSFORMERS_PEERS)[number], load: () => Promise<M>): Promise<M> {
  try {
    return await load();
  } catch (e) {
    const missing = missingPackage(e);
    if (missing === undefined || !(TRANSFORMERS_PEERS as readonly string[]).includes(missing)) throw e;
    throw new BackendUnavailableError(
      `the benchmark's "transformers.js" runtime needs ${missing}${missing === name ? '' : ` (imported by ${name})`}, which is not installed: ${TRANSFORMERS_INSTALL_HINT}`,
      { runtime: 'transformers.js', missing, install: 'npm install @kvfold/transformers @huggingface/transformers@^4.3.1' },
      e,
    );
  }
}

const loadAdapter = () => importTransformersPeer('@kvfold/transformers', () => import('@kvfold/transformers'));
const loadLibrary = () => importTransformersPeer('@huggingface/transformers', () => import('@huggingface/transformers'));

/**
 * Check, before a run starts, that the `transformers.js` runtime's optional peers are installed.
 * @throws BackendUnavailableError naming the missing package and the install command.
 */
export async function checkTransformersRuntime(): Promise<void> {
  await loadAdapter();
  await loadLibrary();
}

/** A model loaded by transformers.js for the benchmark. */
export interface TransformersBenchModel {
  /** The transformers.js model. */
  readonly model: TransformersModelLike;
  /** The exported folder it was loaded from. */
  readonly folder: string;
  /** What runs it, for reports. */
  readonly describe: string;
}

const loaded = new Map<string, Promise<TransformersBenchModel>>();
const folders: string[] = [];

/**
 * Export `checkpoint` (once per process and settings) and load it with transformers.js. With
 * `proportional`, the graph with `past_log_counts` inputs is loaded.
 * @throws BackendUnavailableError when `@huggingface/transformers` is not installed; whatever the export
 *   or transformers.js throws (typed kvfold errors for a bad checkpoint).
 */
export function openTransformers(checkpoint: string, options: { readonly groupReduction: GroupReduction; readonly proportional: boolean }): Promise<TransformersBenchModel> {
  const key = `${checkpoint}|${options.groupReduction}|${options.proportional}`;
  let p = loaded.get(key);
  if (!p) {
    p = (async () => {
      const [{ exportOnnx }, tjs] = await Promise.all([import('@kvfold/onnx-export'), loadLibrary()]);
      if (folders.length === 0) process.once('exit', () => folders.forEach((f) => rmSync(f, { recursive: true, force: true })));
      const root = await mkdtemp(join(tmpdir(), 'kvfold-bench-onnx-'));
      folders.push(root);
      const folder = join(root, 'model');
      await exportOnnx(checkpoint, folder, { groupReduction: options.groupReduction, proportional: options.proportional });
      tjs.env.allowRemoteModels = false;
      tjs.env.localModelPath = dirname(folder);
      const model = (await tjs.AutoModelForCausalLM.from_pretrained(basename(folder), options.proportional ? { model_file_name: 'model_proportional' } : {})) as unknown as TransformersModelLike;
      return { model, folder, describe: `transformers.js 4 (onnxruntime-node CPU) on an @kvfold/onnx-export export; policies on the reference backend` };
    })();
    loaded.set(key, p);
  }
  return p;
}

/** Options of {@link startTransformersRun}. */
export interface TransformersRunOptions {
  /** Seed of the policy's RNG. */
  readonly seed: number;
  /** Proportional attention. */
  readonly proportional: boolean;
}

/** A sequence on transformers.js after its prompt: the session, the next-token logits and the prompt time. */
export interface TransformersRun {
  /** The compressed session (feed more tokens, read lengths and bytes). */
  readonly session: CompressedSession<HostTensor>;
  /** Logits of the token after the prompt. */
  readonly logits: Float32Array;
  /** Prompt forward pass plus the policy's prefill compression, ms. */
  readonly prefillMs: number;
}

/** Prefill `ids` on transformers.js and let `policy` (none = full cache) compress to `budget`. */
export async function startTransformersRun(tjs: TransformersBenchModel, ids: readonly number[], policy: KVCachePolicy | undefined, budget: Budget, options: TransformersRunOptions): Promise<TransformersRun> {
  const { CompressedSession } = await loadAdapter();
  const session = CompressedSession.create({ model: tjs.model, kernels: createReferenceKernels(), ...(policy ? { policy } : {}), budget, seed: options.seed, proportional: options.proportional });
  try {
    const t0 = performance.now();
    const logits = await session.feed(ids);
    return { session, logits, prefillMs: performance.now() - t0 };
  } catch (e) {
    session.dispose();
    throw e;
  }
}
