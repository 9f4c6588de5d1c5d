import * as tf from '@tensorflow/tfjs-core';
import {
  bindKernels,
  ConfigError,
  defineBackend,
  defineKernelBackend,
  silentLogger,
  type AnyKernelImplementation,
  type BackendDefinition,
  type HostTensor,
  type JsonSchema,
  type KernelBackend,
  type KernelImplementations,
  type KVKernels,
  type Logger,
  validateAgainst,
} from '@kvfold/core';
import { activate, claimEngine, ENGINE_CHOICES, loadEngine, type TfjsEngine, type TfjsEngineChoice } from './engine.js';
import { accumulate } from './kernels/accumulate.js';
import { adjacentCosine } from './kernels/adjacentCosine.js';
import { allFinite } from './kernels/allFinite.js';
import { append } from './kernels/append.js';
import { gather } from './kernels/gather.js';
import { keyNorms } from './kernels/keyNorms.js';
import { mergeIntoNeighbours } from './kernels/mergeIntoNeighbours.js';
import { mergeSegments } from './kernels/mergeSegments.js';
import { OBSERVE_BLOCK, observeKernelFor } from './kernels/observe.js';
import { topK } from './kernels/topK.js';
import { inspectTensor, isTensor } from './screen.js';
import { wasmAdjacentCosine } from './wasm/adjacentCosine.js';
import { wasmGather } from './wasm/gather.js';
import { editableView, engineKernels } from './wasm/heap.js';
import { useThreadedWasmEngine } from './wasm/threaded.js';
import { THREAD_MIN_BYTES } from '@kvfold/wasm-kernels';
import { wasmMergeIntoNeighbours } from './wasm/mergeIntoNeighbours.js';
import { wasmMergeSegments } from './wasm/mergeSegments.js';
import { wasmTopK } from './wasm/topK.js';
import { wasmLinkSegments } from './wasm/linkSegments.js';
import { wasmMergeSimilar } from './wasm/mergeSimilar.js';

/** Options of the tfjs backend (JSON Schema: {@link tfjsOptionsSchema}). */
export interface TfjsBackendOptions {
  /**
   * tfjs engine: `auto` (default) picks `tensorflow` when @tensorflow/tfjs-node(-gpu) is installed, else
   * `wasm`, else `cpu`; naming an engine that cannot run throws BackendUnavailableError.
   */
  readonly engine?: TfjsEngineChoice;
  /**
   * Largest block of attention logits (float32 elements) `observe` materialises at once; bounds its
   * memory (16 MiB by default) at the cost of more, smaller matMuls. Default 4,194,304.
   */
  readonly observeBlock?: number;
  /**
   * `wasm` (default): on the wasm engine, gather, adjacentCosine, mergeSegments, mergeIntoNeighbours,
   * topK, linkSegments and mergeSimilar run as kvfold's own WebAssembly SIMD kernels (@kvfold/wasm-kernels, bit-identical
   * to the reference backend; topK is core's radix selection), registered as custom tfjs kernels of the `wasm` backend
   * and run in place on the engine's heap ({@link TFJS_WASM_KERNELS}); the other kernels, and every
   * kernel on other engines, are tfjs op programs (linkSegments and mergeSimilar, which have none, run core's
   * reference through the host there; KVMerger does not call them there). `tfjs`: every
   * kernel a tfjs op program on every engine (what ran before; kept to compare and for engines kvfold's
   * kernels cannot run in).
   */
  readonly kernels?: TfjsKernelMode;
  /**
   * In Node, with the wasm engine and `kernels: 'wasm'`: threads kvfold's kernels split heads over, the
   * caller's included. Above 1, kvfold starts tfjs-backend-wasm's threaded build as tfjs's `wasm` engine
   * (tfjs itself never does in Node), whose heap is shared memory, and runs its kernels there as the
   * reference backend does on its own heap (`src/wasm/threaded.ts`): this must happen before anything
   * else starts tfjs's `wasm` engine in the process; backends created after it share the engine, each with
   * its own count. Default 1: tfjs's own single-threaded engine. When the threaded build cannot start, the
   * backend logs why and runs on one thread.
   */
  readonly threads?: number;
  /**
   * With `threads` above 1: the smallest call (bytes of keys, `heads x length x headDim x 4`) handed to the
   * workers; smaller calls run on the calling thread. Default {@link THREAD_MIN_BYTES} (4 MiB), as on the
   * reference backend.
   */
  readonly threadMinBytes?: number;
}

/** What the `kernels` option accepts: see {@link TfjsBackendOptions.kernels}. */
export type TfjsKernelMode = 'wasm' | 'tfjs';

/**
 * The kernels that run as kvfold's own kernels in the wasm engine's heap in `kernels: 'wasm'` mode: the
 * @kvfold/wasm-kernels SIMD kernels (topK: core's radix selection), on the tensors where they lie.
 */
export const TFJS_WASM_KERNELS = ['topK', 'gather', 'adjacentCosine', 'mergeSegments', 'mergeIntoNeighbours', 'linkSegments', 'mergeSimilar'] as const;

/** Options of {@link createTfjsKernels}: the backend options plus where to report the engine chosen. */
export interface CreateTfjsKernelsOptions extends TfjsBackendOptions {
  /** Receives the engine chosen, fallbacks and engine switches; default silent. */
  readonly logger?: Logger;
}

/** JSON Schema of {@link TfjsBackendOptions}, with defaults and bounds. */
export const tfjsOptionsSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    engine: {
      enum: [...ENGINE_CHOICES],
      default: 'auto',
      description: 'tfjs engine: auto = tensorflow (if @tensorflow/tfjs-node(-gpu) is installed) > wasm (SIMD) > cpu; naming one that cannot run is an error with the install command.',
    },
    observeBlock: {
      type: 'integer',
      minimum: 1024,
      maximum: 268435456,
      default: OBSERVE_BLOCK,
      description: 'Largest block of attention logits (float32 elements) observe materialises at once: bounds its memory (default 16 MiB).',
    },
    kernels: {
      type: 'string',
      enum: ['wasm', 'tfjs'],
      default: 'wasm',
      description: "wasm: on tfjs's wasm engine, gather, adjacentCosine, mergeSegments, mergeIntoNeighbours, topK (core's radix selection), linkSegments and mergeSimilar run as kvfold's WebAssembly SIMD kernels (custom tfjs kernels, in place on the engine's heap, same results as the reference backend); tfjs: every kernel a tfjs op program (the only mode on other engines).",
    },
    threads: {
      type: 'integer',
      minimum: 1,
      maximum: 64,
      default: 1,
      description: "Node, wasm engine, kernels 'wasm': threads kvfold's kernels split heads over, the caller included. Above 1 kvfold starts tfjs-backend-wasm's threaded build as tfjs's wasm engine (before anything else starts that engine); if it cannot, one thread and a logged reason.",
    },
    threadMinBytes: {
      type: 'integer',
      minimum: 0,
      maximum: 1099511627776,
      default: THREAD_MIN_BYTES,
      description: 'With threads above 1: the smallest call (bytes of keys) handed to the workers; smaller calls run on the calling thread (default 4 MiB, as on the reference backend).',
    },
  },
};

/** The tfjs kernels, with the engine they run on. */
export interface TfjsKernels extends KVKernels<tf.Tensor> {
  /** The engine every kernel of this object runs on. */
  readonly engine: TfjsEngine;
  /** wasm only: whether the SIMD build runs; undefined on other engines. */
  readonly simd: boolean | undefined;
  /** Which kernels run: `wasm` when kvfold's wasm kernels do ({@link TfjsBackendOptions.kernels}), else `tfjs`. */
  readonly kernelMode: TfjsKernelMode;
  /**
   * Peak tensor bytes of this engine while `f` runs, above those live when it starts (`tf.profile`; its
   * bookkeeping slows `f`, so benchmarks measure it on an untimed call).
   */
  peakBytesOf(f: () => Promise<unknown>): Promise<number>;
}

/** Validate the options (everything but the logger) against the schema, filling in defaults. */
function checkOptions(options: CreateTfjsKernelsOptions | undefined): Required<TfjsBackendOptions> {
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    throw new ConfigError([{ path: '', rule: 'type', message: 'must be an object', allowed: 'object' }], 'tfjs backend options');
  }
  const { logger: _logger, ...rest } = options ?? {};
  return validateAgainst<Required<TfjsBackendOptions>>(tfjsOptionsSchema, rest, 'tfjs backend options');
}

/**
 * Create kernels on a tfjs engine: every kernel of {@link KVKernels} as a tfjs-core tensor program
 * (batched matMul, gather with batchDims, scatterND, topk, where), with intermediates released by
 * `tf.tidy`. Results equal the reference backend's within 1e-5 relative error.
 *
 * tfjs has one current backend per process. Each kernel call first makes this object's engine current
 * (a synchronous switch, since the engine is already initialised), so kernels created for different
 * engines in one process all stay correct; the second engine's creation logs a warning, and tensors
 * handed from one engine's kernels to the other's are copied by tfjs on first use.
 * @throws BackendUnavailableError when the named engine cannot run here (for `tensorflow`, with the install command).
 * @throws ConfigError for an unknown option or engine name.
 */
export async function createTfjsKernels(options?: CreateTfjsKernelsOptions): Promise<TfjsKernels> {
  const logger = options?.logger ?? silentLogger;
  return bindKernels(await tfjsKernelBackend(options), { logger }) as TfjsKernels;
}

/**
 * The tfjs backend as core binds it: tensor transfers on the chosen engine and one implementation per
 * kernel (`src/kernels/*.ts`). {@link createTfjsKernels} and `KVFold.backend('tfjs')` bind it.
 * @throws BackendUnavailableError, ConfigError as {@link createTfjsKernels}.
 */
export async function tfjsKernelBackend(options?: CreateTfjsKernelsOptions): Promise<KernelBackend<tf.Tensor>> {
  const { engine: choice, observeBlock, kernels: mode, threads, threadMinBytes } = checkOptions(options);
  const split = { threads, minBytes: threadMinBytes };
  const logger = options?.logger ?? silentLogger;
  if (threads > 1 && mode === 'wasm' && (choice === 'wasm' || choice === 'auto')) {
    const got = await useThreadedWasmEngine(threads);
    if (got.why !== undefined) logger.warn(`tfjs: kvfold's wasm kernels run on one thread: ${got.why}`, { threads });
  }
  const loaded = await loadEngine(choice, logger);
  const engine = loaded.engine;
  claimEngine(engine, logger);
  logger.info(`tfjs backend: ${loaded.detail}`, { engine, requested: choice });
  let switched = false;
  const on = (): void => {
    if (activate(engine) && !switched) {
      switched = true;
      logger.debug(`tfjs: switched the global tfjs backend back to "${engine}" for these kernels`, { engine });
    }
  };
  const wasm = mode === 'wasm' && engine === 'wasm' ? wasmKernelsHere(logger) : false;
  const implementations: Record<string, AnyKernelImplementation> = {
    allFinite,
    append,
    accumulate,
    topK: wasm ? wasmTopK(split) : topK,
    gather: wasm ? wasmGather(split) : gather,
    adjacentCosine: wasm ? wasmAdjacentCosine(split) : adjacentCosine,
    keyNorms,
    mergeSegments: wasm ? wasmMergeSegments(split) : mergeSegments,
    mergeIntoNeighbours: wasm ? wasmMergeIntoNeighbours(split) : mergeIntoNeighbours,
    observe: observeKernelFor(observeBlock),
    // No tfjs op program: a segment walk is a sequential scan, which tfjs ops would spell as several
    // cumulative passes. Elsewhere core's reference runs it through the host (and KVMerger plans there itself).
    ...(wasm ? { linkSegments: wasmLinkSegments(split), mergeSimilar: wasmMergeSimilar(split) } : {}),
  };
  // Every kernel first makes this object's engine current (see createTfjsKernels).
  const kernels: Record<string, AnyKernelImplementation> = {};
  for (const [name, impl] of Object.entries(implementations)) {
    kernels[name] = {
      run: (call: unknown, note: unknown) => {
        on();
        return impl.run(call, note);
      },
      ...(impl.screen ? { screen: (call: unknown) => (on(), impl.screen!(call)) } : {}),
    };
  }
  return defineKernelBackend<tf.Tensor>({
    name: 'tfjs',
    describe: () => `tfjs ${tf.version_core} on ${loaded.detail}${wasm ? `; kvfold wasm kernels for ${TFJS_WASM_KERNELS.join(', ')}${engineKernels(tf.backend()).threadsFor(split) ? ` on ${threads} threads` : ''}` : ''}`,
    inspect: inspectTensor,
    fromHost: (tensor: HostTensor) => {
      on();
      // The tfjs tensor must never alias caller memory: the wasm engine copies into its heap itself, the
      // others keep the array they are given, so they get a copy.
      return tf.tensor(engine === 'wasm' ? tensor.data : tensor.data.slice(), [...tensor.shape], tensor.dtype);
    },
    toHost: async (tensor) => {
      on();
      // A copy: the cpu engine hands out its own storage, which a caller must never be able to edit (the
      // wasm engine's read is already a fresh copy of its heap).
      const read = await tensor.data<'float32' | 'int32'>();
      const data = engine === 'wasm' ? read : read.slice();
      return { dtype: tensor.dtype, shape: [...tensor.shape], data } as HostTensor;
    },
    read: (tensor) => {
      on();
      return { dtype: tensor.dtype, shape: tensor.shape, data: tensor.dataSync<'float32' | 'int32'>() } as HostTensor;
    },
    dispose: (tensors) => {
      for (const t of tensors) if (isTensor(t)) t.dispose();
    },
    // In-place decode on the wasm engine: views of its heap, refused for memory two tensors share.
    ...(wasm ? { view: (tensor: tf.Tensor, write: boolean) => (on(), editableView(engineKernels(tf.backend()).engine, tensor, write)) } : {}),
    kernels: kernels as KernelImplementations<tf.Tensor>,
    extensions: {
      engine,
      simd: loaded.simd,
      kernelMode: wasm ? 'wasm' : 'tfjs',
      peakBytesOf: async (f: () => Promise<unknown>) => {
        const start = tf.memory().numBytes;
        const info = await tf.profile(async () => {
          await f();
        });
        return info.peakBytes - start;
      },
    },
  });
}

/**
 * Whether kvfold's wasm kernels can run in the current tfjs backend (the wasm engine, just made current);
 * logs why not when they cannot, and the kernels then stay tfjs programs.
 */
function wasmKernelsHere(logger: Logger): boolean {
  try {
    engineKernels(tf.backend());
    return true;
  } catch (e) {
    logger.warn(`tfjs: kvfold's wasm kernels cannot run in this wasm engine (${(e as Error).message}); every kernel runs as tfjs ops`);
    return false;
  }
}

/** The tfjs backend's registration: options `engine` (`auto` | `wasm` | `cpu` | `tensorflow`), `observeBlock` and `kernels` (`wasm` | `tfjs`). */
export const tfjsBackend: BackendDefinition<TfjsBackendOptions> = defineBackend<TfjsBackendOptions>({
  name: 'tfjs',
  description: 'TensorFlow.js kernels: wasm (SIMD) by default, cpu as fallback, tensorflow (libtensorflow) when @tensorflow/tfjs-node is installed.',
  schema: tfjsOptionsSchema,
  create: async (options, services) => (await tfjsKernelBackend({ ...options, logger: services.logger })) as KernelBackend<unknown>,
});
