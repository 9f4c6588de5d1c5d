import * as tf from '@tensorflow/tfjs-core';
// Importing registers the engines with tfjs (nothing is initialised until one is selected).
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { threadedWasmStarted } from './wasm/threaded.js';
import { BackendUnavailableError, type Logger } from '@kvfold/core';

// tfjs's cpu engine prints "Hi, looks like you are running TensorFlow.js in Node.js..." on its first
// tensor. kvfold says which engine it runs on itself (`describe()`), so tfjs's console messages are turned
// off with the flag tfjs provides for that (PROD only silences tfjs's log); KVFOLD_TFJS_LOGS=1 keeps them.
if (process.env.KVFOLD_TFJS_LOGS !== '1') tf.env().set('PROD', true);

/** A tfjs engine kvfold can run on. */
export type TfjsEngine = 'wasm' | 'cpu' | 'tensorflow';

/** What the `engine` option accepts: an engine, or `auto` (tensorflow > wasm > cpu). */
export type TfjsEngineChoice = 'auto' | TfjsEngine;

/** Every value of the `engine` option. */
export const ENGINE_CHOICES: readonly TfjsEngineChoice[] = ['auto', 'wasm', 'cpu', 'tensorflow'];

/** The packages that provide tfjs's `tensorflow` engine (libtensorflow), tried in this order. */
export const TENSORFLOW_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;

/** The command users run to get the `tensorflow` engine. */
export const TENSORFLOW_INSTALL = 'npm install @tensorflow/tfjs-node';

/** An engine that is initialised and ready. */
export interface LoadedEngine {
  /** Which engine. */
  readonly engine: TfjsEngine;
  /** One line for `describe()`. */
  readonly detail: string;
  /** wasm only: whether the SIMD build runs. */
  readonly simd?: boolean;
  /** tensorflow only: the package that provided it. */
  readonly provider?: string;
}

/**
 * Engines that kernels were created for in this process. tfjs has one current backend per process
 * (`tf.setBackend` is global), so a second engine is worth a warning.
 */
const enginesInUse = new Set<TfjsEngine>();

/** Provider reported when a `tensorflow` backend was registered before kvfold looked (the user imported tfjs-node). */
const ALREADY_REGISTERED = 'already registered';

/** Load `@tensorflow/tfjs-node-gpu` or `@tensorflow/tfjs-node` if the user installed one; returns the package or the errors. */
async function importTensorflow(): Promise<{ provider: string } | { errors: string[] }> {
  const errors: string[] = [];
  if (tf.findBackendFactory('tensorflow') !== null) return { provider: ALREADY_REGISTERED };
  for (const pkg of TENSORFLOW_PACKAGES) {
    try {
      // A variable specifier: neither package is a dependency (their install downloads libtensorflow),
      // so bundlers and tsc must not try to resolve them.
      const spec: string = pkg;
      await import(spec);
      if (tf.findBackendFactory('tensorflow') !== null) return { provider: pkg };
      errors.push(`${pkg} loaded but registered no "tensorflow" backend`);
    } catch (e) {
      errors.push(`${pkg}: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
    }
  }
  return { errors };
}

/** Initialise one engine and make it tfjs's current backend; false when it cannot start. */
async function start(name: TfjsEngine): Promise<boolean> {
  try {
    return await tf.setBackend(name);
  } catch {
    return false;
  }
}

async function describeWasm(): Promise<LoadedEngine> {
  const simd = (await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) === true;
  // tfjs never starts its threaded build in Node (WASM_HAS_MULTITHREAD_SUPPORT is hard-wired false there);
  // kvfold does when a backend asks for threads (wasm/threaded.ts).
  return { engine: 'wasm', simd, detail: `wasm (XNNPACK, SIMD ${simd ? 'on' : 'off'}, ${threadedWasmStarted() ? "the threaded build's shared heap, tfjs ops on 1 thread" : '1 thread'})` };
}

/**
 * Load the requested engine (or the best available for `auto`) and make it current.
 * @throws BackendUnavailableError when a named engine cannot run here, with the install command for `tensorflow`.
 */
export async function loadEngine(choice: TfjsEngineChoice, logger: Logger): Promise<LoadedEngine> {
  if (choice === 'tensorflow' || choice === 'auto') {
    const found = await importTensorflow();
    if ('provider' in found && (await start('tensorflow'))) {
      const detail =
        found.provider === ALREADY_REGISTERED
          ? 'tensorflow (libtensorflow; a "tensorflow" tfjs backend was already registered)'
          : `tensorflow (libtensorflow ${found.provider.endsWith('-gpu') ? 'with CUDA' : 'CPU'} via ${found.provider})`;
      return { engine: 'tensorflow', provider: found.provider, detail };
    }
    const why = 'errors' in found ? found.errors : ['the "tensorflow" backend failed to initialise'];
    if (choice === 'tensorflow') {
      throw new BackendUnavailableError(
        `tfjs engine "tensorflow" is not available: install @tensorflow/tfjs-node (or @tensorflow/tfjs-node-gpu for CUDA) with \`${TENSORFLOW_INSTALL}\`, or choose engine "wasm" or "cpu"`,
        { engine: 'tensorflow', install: TENSORFLOW_INSTALL, tried: [...TENSORFLOW_PACKAGES], reasons: why },
      );
    }
    logger.debug('tfjs: tensorflow engine not installed, trying wasm', { reasons: why });
  }
  if (choice === 'wasm' || choice === 'auto') {
    if (await start('wasm')) return describeWasm();
    if (choice === 'wasm') {
      throw new BackendUnavailableError('tfjs engine "wasm" failed to initialise (are the tfjs-backend-wasm .wasm files present next to its dist bundle?); choose engine "cpu"', {
        engine: 'wasm',
      });
    }
    logger.warn('tfjs: wasm engine failed to initialise; falling back to the cpu engine (plain JavaScript, much slower)');
  }
  if (await start('cpu')) return { engine: 'cpu', detail: 'cpu (plain JavaScript kernels)' };
  throw new BackendUnavailableError('tfjs engine "cpu" failed to initialise', { engine: 'cpu' });
}

/**
 * Record that kernels for `engine` now exist, warning when another engine already has kernels in this
 * process: both keep working, but every call switches tfjs's global backend and tensors crossing between
 * them are copied.
 */
export function claimEngine(engine: TfjsEngine, logger: Logger): void {
  const others = [...enginesInUse].filter((e) => e !== engine);
  if (others.length > 0) {
    logger.warn(
      `tfjs: kernels for engine "${engine}" created while kernels for ${others.map((e) => `"${e}"`).join(', ')} exist in this process; ` +
        'tfjs has one global backend, so each kernel call switches it to its own engine, and tensors passed between engines are copied',
      { engine, others },
    );
  }
  enginesInUse.add(engine);
}

/**
 * Make `engine` tfjs's current backend before a kernel runs. It was initialised when the kernels were
 * created, so tfjs switches synchronously (the returned promise only reports success).
 * Returns true when it had to switch (another engine, or user code, had made itself current).
 * @throws BackendUnavailableError when the engine was removed from tfjs since.
 */
export function activate(engine: TfjsEngine): boolean {
  if (tf.getBackend() === engine) return false;
  void tf.setBackend(engine).catch(() => false);
  if (tf.getBackend() !== engine) {
    throw new BackendUnavailableError(`tfjs engine "${engine}" is no longer registered or initialised; create the kernels again`, { engine });
  }
  return true;
}
