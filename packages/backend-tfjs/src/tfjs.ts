import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  defineBackend,
  DTypeError,
  ShapeError,
  silentLogger,
  type BackendDefinition,
  type DType,
  type HostTensor,
  type JsonSchema,
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
import { mergeIntoNeighbours } from './kernels/mergeIntoNeighbours.js';
import { mergeSegments } from './kernels/mergeSegments.js';
import { OBSERVE_BLOCK, observe } from './kernels/observe.js';
import { topK } from './kernels/topK.js';
import { isTensor } from './validate.js';

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
}

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
  },
};

/** The tfjs kernels, with the engine they run on. */
export interface TfjsKernels extends KVKernels<tf.Tensor> {
  /** The engine every kernel of this object runs on. */
  readonly engine: TfjsEngine;
  /** wasm only: whether the SIMD build runs; undefined on other engines. */
  readonly simd: boolean | undefined;
}

/** Validate the options (everything but the logger) against the schema, filling in defaults. */
function checkOptions(options: CreateTfjsKernelsOptions | undefined): Required<TfjsBackendOptions> {
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    throw new ConfigError([{ path: '', rule: 'type', message: 'must be an object', allowed: 'object' }], 'tfjs backend options');
  }
  const { logger: _logger, ...rest } = options ?? {};
  return validateAgainst<Required<TfjsBackendOptions>>(tfjsOptionsSchema, rest, 'tfjs backend options');
}

/** Validate a host tensor and copy its data, so the tfjs tensor never aliases caller memory. */
function hostData(t: HostTensor): { data: Float32Array | Int32Array; shape: number[]; dtype: DType } {
  if (typeof t !== 'object' || t === null || !Array.isArray(t.shape)) {
    throw new ShapeError('fromHost tensor is not a host tensor (expected { dtype, shape, data })', { field: 'tensor' });
  }
  if (t.dtype !== 'float32' && t.dtype !== 'int32') throw new DTypeError('fromHost tensor', String(t.dtype), ['float32', 'int32']);
  const ok = t.dtype === 'float32' ? t.data instanceof Float32Array : t.data instanceof Int32Array;
  if (!ok) throw new DTypeError('fromHost tensor', `${t.dtype} (backed by ${t.data === null || t.data === undefined ? String(t.data) : (t.data as object).constructor.name})`, [t.dtype]);
  let n = 1;
  for (const d of t.shape) {
    if (!Number.isInteger(d) || d < 0) throw new ShapeError(`fromHost tensor has invalid dimension ${d} in shape [${t.shape.join(', ')}]`, { field: 'tensor', shape: t.shape });
    n *= d;
  }
  if (t.data.length !== n) {
    throw new ShapeError(`fromHost tensor holds ${t.data.length} elements but its shape [${t.shape.join(', ')}] needs ${n}`, { field: 'tensor', shape: t.shape, length: t.data.length });
  }
  return { data: t.data.slice(), shape: [...t.shape], dtype: t.dtype };
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
  const { engine: choice, observeBlock } = checkOptions(options);
  const logger = options?.logger ?? silentLogger;
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
  const run =
    <A extends unknown[], R>(f: (...args: A) => R) =>
    (...args: A): R => {
      on();
      return f(...args);
    };
  return {
    backend: 'tfjs',
    engine,
    simd: loaded.simd,
    describe: () => `tfjs ${tf.version_core} on ${loaded.detail}`,
    fromHost: run((tensor: HostTensor) => {
      const { data, shape, dtype } = hostData(tensor);
      return tf.tensor(data, shape, dtype);
    }),
    toHost: async (tensor) => {
      if (!isTensor(tensor)) throw new ShapeError('toHost tensor is not a tfjs-backend tensor (tf.Tensor)', { field: 'tensor' });
      if (tensor.isDisposed) throw new ShapeError('toHost tensor was disposed and can no longer be used', { field: 'tensor' });
      if (tensor.dtype !== 'float32' && tensor.dtype !== 'int32') throw new DTypeError('toHost tensor', tensor.dtype, ['float32', 'int32']);
      on();
      // A copy: the cpu engine hands out its own storage, which a caller must never be able to edit.
      const data = (await tensor.data<'float32' | 'int32'>()).slice();
      return { dtype: tensor.dtype, shape: [...tensor.shape], data } as HostTensor;
    },
    shapeOf: (tensor) => tensor.shape,
    dtypeOf: (tensor) => {
      if (tensor.dtype !== 'float32' && tensor.dtype !== 'int32') throw new DTypeError('tensor', tensor.dtype, ['float32', 'int32']);
      return tensor.dtype;
    },
    dispose: (...tensors) => {
      for (const t of tensors) if (t !== undefined && isTensor(t)) t.dispose();
    },
    allFinite: (tensor, bound) => {
      on();
      return allFinite(tensor, bound);
    },
    append: run(append),
    accumulate: run(accumulate),
    topK: run(topK),
    gather: run(gather),
    adjacentCosine: run(adjacentCosine),
    mergeSegments: run(mergeSegments),
    mergeIntoNeighbours: run(mergeIntoNeighbours),
    observe: run((layer, queries, queryPositions, opts) => observe(layer, queries, queryPositions, opts, observeBlock)),
  };
}

/** The tfjs backend's registration: options `engine` (`auto` | `wasm` | `cpu` | `tensorflow`) and `observeBlock`. */
export const tfjsBackend: BackendDefinition<TfjsBackendOptions> = defineBackend<TfjsBackendOptions>({
  name: 'tfjs',
  description: 'TensorFlow.js kernels: wasm (SIMD) by default, cpu as fallback, tensorflow (libtensorflow) when @tensorflow/tfjs-node is installed.',
  schema: tfjsOptionsSchema,
  create: async (options, services) => createTfjsKernels({ ...options, logger: services.logger }),
});
