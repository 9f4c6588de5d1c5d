import { BackendUnavailableError } from '@kvfold/core';

/**
 * Loading the `transformers.js` runtime's optional peers. Nothing here names their types, so the
 * package's declarations compile without them.
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

/**
 * Check, before a run starts, that the `transformers.js` runtime's optional peers are installed.
 * @throws BackendUnavailableError naming the missing package and the install command.
 */
export async function checkTransformersRuntime(): Promise<void> {
  await importTransformersPeer('@kvfold/transformers', () => import('@kvfold/transformers'));
  await importTransformersPeer('@huggingface/transformers', () => import('@huggingface/transformers'));
}

