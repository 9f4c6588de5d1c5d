import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { BackendWasm, setThreadsCount } from '@tensorflow/tfjs-backend-wasm';

/**
 * tfjs's `wasm` engine with a shared heap in Node: tfjs-backend-wasm's threaded build, which tfjs itself
 * never starts there (`WASM_HAS_MULTITHREAD_SUPPORT` is hard-wired false in Node, tensorflow/tfjs#3830, and
 * its loader hands Emscripten `blob:` URLs that Node's `Worker` refuses). kvfold starts the same Emscripten
 * factory with file paths instead: the build's own script for the pthread workers to load, and
 * `worker/pthread-worker.cjs`, which runs the worker program tfjs ships as a string. The engine is then
 * registered as tfjs's `wasm` backend, so every tfjs kernel and every kvfold kernel registered for `wasm`
 * runs on it unchanged; its heap being a `SharedArrayBuffer`, kvfold's kernels split heads over worker
 * threads there as on the reference backend.
 *
 * This uses parts of tfjs-backend-wasm 4.22 that are not public API (the `wasm-out/` files, the factory's
 * options, the `tfjs` bridge `BackendWasm` expects); the package is pinned to that version, and any failure
 * leaves tfjs's own single-threaded engine in place.
 * @module
 */

/** Whether kvfold has made the threaded build tfjs's `wasm` engine in this process. */
let started = false;
/** The start in progress, so concurrent callers share one. */
let starting: Promise<ThreadedWasm> | undefined;
/** Why the build failed to start, once it has: a later call does not load it again. */
let failed: ThreadedWasm | undefined;

/** What {@link useThreadedWasmEngine} achieved. */
export interface ThreadedWasm {
  /** Threads kvfold's kernels may split over on the `wasm` engine: those asked for, or 1 when the heap is not shared. */
  readonly threads: number;
  /** Why the engine stays single-threaded, when it does. */
  readonly why?: string;
}

/** The Emscripten module of the threaded build, as far as kvfold touches it. */
interface ThreadedModule {
  readonly wasmMemory: { readonly buffer: ArrayBufferLike };
  cwrap(name: string, returns: string | null, args: string[]): (...a: number[]) => number | undefined;
  tfjs?: object;
}

/** How long the build may take to start its workers before kvfold gives up on it. */
const START_TIMEOUT_MS = 20_000;

/** Whether tfjs's `wasm` engine in this process is the threaded build kvfold started (its heap shared memory). */
export function threadedWasmStarted(): boolean {
  return started;
}

/**
 * Make tfjs's `wasm` engine the threaded build, for kvfold's kernels to split over `threads` threads (the
 * caller's included; each kvfold backend passes its own count with every kernel call, so backends with
 * different counts share the engine). Must run before anything starts tfjs's `wasm` backend in this process.
 * Never throws: returns `{ threads: 1, why }` when it cannot (not Node, `threads <= 1`, the `wasm` engine
 * already running single-threaded, or the build failing to start), leaving tfjs's own engine registered.
 */
export function useThreadedWasmEngine(threads: number): Promise<ThreadedWasm> {
  if (!(threads > 1)) return Promise.resolve({ threads: 1, why: 'one thread asked for' });
  if (started) return Promise.resolve({ threads });
  if (failed) return Promise.resolve(failed);
  starting ??= start().finally(() => {
    starting = undefined;
  });
  return starting.then((r) => (r.why === undefined ? { threads } : r));
}

/**
 * Whether tfjs's `wasm` engine exists or is being initialised (read from the engine's registry: `tf.findBackend`
 * would start initialising it).
 */
function wasmEngineStarted(): boolean {
  const e = tf.engine() as unknown as { registry?: Record<string, unknown>; backendName?: string | null; pendingBackendInit?: unknown };
  return (e.registry !== undefined && 'wasm' in e.registry) || (e.backendName === 'wasm' && e.pendingBackendInit != null);
}

async function start(): Promise<ThreadedWasm> {
  if (typeof process !== 'object' || typeof process.versions?.node !== 'string') return { threads: 1, why: 'not Node (in a browser, tfjs starts its threaded build itself where the page is cross-origin isolated)' };
  if (wasmEngineStarted()) return { threads: 1, why: "tfjs's wasm engine was already started, single-threaded, in this process" };
  let module: ThreadedModule;
  try {
    const require = createRequire(import.meta.url);
    const script = require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js');
    const binary = require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.wasm');
    // The same path from src/wasm and dist/wasm.
    const worker = fileURLToPath(new URL('../../worker/pthread-worker.cjs', import.meta.url));
    // A missing worker file would surface only as workers that never load: fail at once instead.
    if (!existsSync(worker)) return { threads: 1, why: `its pthread worker file is missing (${worker})` };
    const factory = require(script) as (options: object) => Promise<ThreadedModule>;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`its workers did not start within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
      timer.unref();
    });
    try {
      module = await Promise.race([
        factory({
          locateFile: (path: string, prefix: string) => (path.endsWith('.worker.js') ? worker : path.endsWith('.wasm') ? binary : prefix + path),
          mainScriptUrlOrBlob: script,
        }),
        timeout,
      ]);
    } finally {
      clearTimeout(timer);
    }
  } catch (e) {
    failed = { threads: 1, why: `tfjs-backend-wasm's threaded build failed to start: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}` };
    return failed;
  }
  if (typeof SharedArrayBuffer === 'undefined' || !(module.wasmMemory.buffer instanceof SharedArrayBuffer)) return { threads: 1, why: "the threaded build's heap is not a SharedArrayBuffer" };
  // Something may have started the wasm engine while the build loaded.
  if (wasmEngineStarted()) return { threads: 1, why: "tfjs's wasm engine was started, single-threaded, while the threaded build loaded" };
  // The bridge tfjs's own loader attaches before it constructs the engine (tfjs-backend-wasm 4.22, backend_wasm.ts `init`).
  module.tfjs = {
    init: module.cwrap('init', null, []),
    initWithThreadsCount: module.cwrap('init_with_threads_count', null, ['number']),
    getThreadsCount: module.cwrap('get_threads_count', 'number', []),
    registerTensor: module.cwrap('register_tensor', null, ['number', 'number', 'number']),
    disposeData: module.cwrap('dispose_data', null, ['number']),
    dispose: module.cwrap('dispose', null, []),
  };
  // tfjs's own ops on one thread: kvfold's kernels split over kvfold's workers, which stay asleep between calls.
  setThreadsCount(1);
  if (tf.findBackendFactory('wasm') !== null) tf.removeBackend('wasm');
  // Priority 2, as tfjs-backend-wasm registers its own.
  tf.registerBackend('wasm', () => new BackendWasm(module as unknown as ConstructorParameters<typeof BackendWasm>[0]), 2);
  started = true;
  return { threads: 2 };
}
