import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { createReferenceKernels } from '@kvfold/backend-reference';
import type { Budget, GroupReduction, HostTensor, KVCachePolicy } from '@kvfold/core';
import type { CompressedSession, TransformersModelLike } from '@kvfold/transformers';
import { importTransformersPeer } from './peers.js';

/**
 * The benchmark's transformers.js runtime: the bench model exported once per process with
 * `@kvfold/onnx-export` to a temporary folder, loaded by transformers.js from it (remote loading off),
 * and driven through `@kvfold/transformers` with policies on the reference backend. transformers.js is
 * imported only when a run asks for this runtime. Not exported from the package: its types come from
 * `@kvfold/transformers`, an optional peer, which a user's declarations must not need.
 * @module
 */

const loadAdapter = () => importTransformersPeer('@kvfold/transformers', () => import('@kvfold/transformers'));
const loadLibrary = () => importTransformersPeer('@huggingface/transformers', () => import('@huggingface/transformers'));

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
