import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BackendUnavailableError, bindKernels, ConfigError, defineBackend, silentLogger, type ConfigIssue, type JsonSchema, type KernelBackend, type Logger } from '@kvfold/core';
import { adjacentCosineModel } from './kernels/adjacentCosine.js';
import { accumulateModel } from './kernels/accumulate.js';
import { OBSERVE_BLOCK } from './kernels/observe.js';
import { onnxKernelBackend, type KernelPath, type OnnxKernels } from './onnxKernels.js';
import type { OnnxTensor } from './tensor.js';
import {
  loadAddon,
  missingCudaProviderFiles,
  nativeFile,
  ortApiOf,
  NativeSessionFactory,
  nativeIncompatibility,
  ortBinDir,
  ortPackageVersion,
  OrtNodeSessionFactory,
  readManifest,
  type SessionConfig,
  type SessionFactory,
} from './session.js';

/** Options of the onnx backend (JSON Schema: {@link onnxOptionsSchema}). */
export interface OnnxBackendOptions {
  /** Execution provider: `cpu` (default) or `cuda` (needs onnxruntime-node's CUDA provider files). */
  readonly executionProvider?: 'cpu' | 'cuda';
  /** When the `cuda` provider cannot be used: `true` (default) logs why and runs on CPU; `false` throws BackendUnavailableError. */
  readonly fallback?: boolean;
  /** The project's native `ai.kvfold` kernels: `auto` (default) uses them when built and compatible (else logs why and runs the function bodies), `off` always runs the function bodies, `require` throws BackendUnavailableError when they cannot be used. */
  readonly native?: 'auto' | 'off' | 'require';
  /**
   * Folder of a native build (manifest.json, addon, libraries); default this package's native/build.
   * Another folder is loaded only with {@link OnnxBackendOptions.allowNativePaths}. Programs only: neither
   * option is in the JSON Schema, so a config can never name native code to load.
   */
  readonly nativeDir?: string;
  /** The program's explicit consent to load native code from {@link OnnxBackendOptions.nativeDir}. */
  readonly allowNativePaths?: boolean;
  /** ORT intra-op threads; 0 (default) lets ORT use one per core. */
  readonly threads?: number;
  /** CUDA device ordinal (default 0). */
  readonly deviceId?: number;
  /** Largest attention-logits block (elements) one function-body observe call materialises before it splits the work (default 4194304 = 16 MiB). */
  readonly observeBlock?: number;
  /**
   * What runs `observe` when native kernels are active: `auto` (default) = the function body on CPU (ORT's MLAS
   * GEMM: 1.8x faster than the native loop at one thread here, about equal at two; bench/RESULTS.md) and the native kernel on CUDA; `native` or
   * `function-body` force one.
   */
  readonly observeKernel?: 'auto' | 'native' | 'function-body';
}

/** JSON Schema of {@link OnnxBackendOptions}. */
export const onnxOptionsSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    executionProvider: { enum: ['cpu', 'cuda'], default: 'cpu', description: 'ORT execution provider; cuda falls back to cpu (logged) when its provider files are missing.' },
    fallback: { type: 'boolean', default: true, description: 'Fall back to cpu (and log why) instead of failing when the cuda provider cannot be used.' },
    native: { enum: ['auto', 'off', 'require'], default: 'auto', description: 'Use the native ai.kvfold kernels built by `pnpm --filter @kvfold/backend-onnx build:native`.' },
    threads: { type: 'integer', minimum: 0, maximum: 1024, default: 0, description: 'ORT intra-op threads (0 = one per core).' },
    deviceId: { type: 'integer', minimum: 0, maximum: 64, default: 0, description: 'CUDA device ordinal.' },
    observeBlock: { type: 'integer', minimum: 1, maximum: 2 ** 31, default: OBSERVE_BLOCK, description: 'Largest attention-logits block (elements) a function-body observe call materialises.' },
    observeKernel: {
      enum: ['auto', 'native', 'function-body'],
      default: 'auto',
      description: 'With native kernels: auto = function body (MLAS GEMM) on CPU, native on CUDA.',
    },
  },
} as JsonSchema;

/** Default folder of the native build: `<package>/native/build` (this file is in src/ or dist/). */
export function defaultNativeDir(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', 'native', 'build');
}

const BUILD_HINT = 'build it with `pnpm --filter @kvfold/backend-onnx build:native`';

/** A reason the native kernels cannot be used (turned into a fallback or a BackendUnavailableError). */
class NativeProblem extends Error {
  constructor(
    message: string,
    readonly details: Record<string, unknown>,
    cause?: unknown,
  ) {
    super(message, { cause });
  }
}

function checkOptions(o: OnnxBackendOptions): void {
  const issues: ConfigIssue[] = [];
  const ep = o.executionProvider;
  if (ep !== undefined && ep !== 'cpu' && ep !== 'cuda') issues.push({ path: '/executionProvider', rule: 'enum', message: `must be "cpu" or "cuda", got ${JSON.stringify(ep)}`, allowed: ['cpu', 'cuda'] });
  if (o.native !== undefined && !['auto', 'off', 'require'].includes(o.native)) {
    issues.push({ path: '/native', rule: 'enum', message: `must be "auto", "off" or "require", got ${JSON.stringify(o.native)}`, allowed: ['auto', 'off', 'require'] });
  }
  if (o.fallback !== undefined && typeof o.fallback !== 'boolean') issues.push({ path: '/fallback', rule: 'type', message: 'must be a boolean' });
  for (const [k, min, max] of [['threads', 0, 1024], ['deviceId', 0, 64], ['observeBlock', 1, 2 ** 31]] as const) {
    const v = o[k];
    if (v !== undefined && (!Number.isInteger(v) || v < min || v > max)) issues.push({ path: `/${k}`, rule: 'range', message: `must be an integer in [${min}, ${max}], got ${v}`, allowed: [min, max] });
  }
  if (o.observeKernel !== undefined && !['auto', 'native', 'function-body'].includes(o.observeKernel)) {
    issues.push({ path: '/observeKernel', rule: 'enum', message: `must be "auto", "native" or "function-body", got ${JSON.stringify(o.observeKernel)}`, allowed: ['auto', 'native', 'function-body'] });
  }
  if (o.nativeDir !== undefined && typeof o.nativeDir !== 'string') issues.push({ path: '/nativeDir', rule: 'type', message: 'must be a string path' });
  else if (o.nativeDir !== undefined && o.allowNativePaths !== true && resolve(o.nativeDir) !== defaultNativeDir()) {
    issues.push({
      path: '/nativeDir',
      rule: 'allowNativePaths',
      message: 'native code is loaded from another folder than this package\'s native/build only when the program also passes allowNativePaths: true (a config can set neither)',
      allowed: [defaultNativeDir()],
    });
  }
  if (issues.length) throw new ConfigError(issues, 'onnx backend options');
}

/**
 * Try a session of a tiny model with `factory`, so a provider or custom-op library that fails shows up at
 * creation, not in the first kernel call.
 */
function probe(factory: SessionFactory, custom: boolean): void {
  factory.create(custom ? 'probe:adjacentCosine' : 'probe:accumulate', custom ? adjacentCosineModel() : accumulateModel()).release();
}

/** Why the CUDA execution provider cannot be used (see {@link cudaUnavailableReason}). */
export interface ProviderProblem {
  /** What failed and what to do about it. */
  readonly reason: string;
  /** Machine-readable context (missing files, provider folder). */
  readonly details: Record<string, unknown>;
  /** ORT's own error, when it threw. */
  readonly cause?: unknown;
}

/**
 * Check whether onnxruntime-node can start its CUDA execution provider here, without throwing.
 *
 * First the provider files next to libonnxruntime (a missing file gives a precise message without asking
 * ORT), then a probe session: onnxruntime-node throws from session creation, rather than falling back,
 * when the provider library or the CUDA runtime does not load, and that error is caught here.
 * @param config the session configuration to probe (its `executionProvider` is taken as `cuda`).
 * @param binDir folder to look for the provider files in; default onnxruntime-node's.
 * @returns undefined when a CUDA session starts, else the reason.
 */
export function cudaUnavailableReason(config: Omit<SessionConfig, 'executionProvider'>, binDir: string = ortBinDir()): ProviderProblem | undefined {
  const missing = missingCudaProviderFiles(binDir);
  if (missing.length) {
    return {
      reason:
        `CUDA execution provider unavailable (${missing.join(', ')} missing in ${binDir}; onnxruntime-node's install script downloads them, ` +
        'and this workspace skips it: reinstall with ONNXRUNTIME_NODE_INSTALL=cuda12 on a CUDA 12 host)',
      details: { missing, binDir },
    };
  }
  try {
    probe(new OrtNodeSessionFactory({ ...config, executionProvider: 'cuda' }), false);
    return undefined;
  } catch (e) {
    const message = ((e as { cause?: Error }).cause ?? (e as Error)).message.split('\n')[0];
    return {
      reason: `CUDA execution provider failed to start (${message}); check the NVIDIA driver and the CUDA 12 runtime libraries onnxruntime-node's CUDA provider needs`,
      details: { binDir },
      cause: e,
    };
  }
}

/**
 * Create the onnx kernels. Synchronous: onnxruntime-node, the native addon and the kernel sessions all load
 * synchronously (sessions on first use of each kernel).
 * @throws ConfigError on invalid options; BackendUnavailableError when onnxruntime-node cannot load, or
 * when `fallback` is false and the requested provider or native library cannot be used.
 */
export function createOnnxKernels(options: OnnxBackendOptions = {}, logger: Logger = silentLogger): OnnxKernels {
  return bindKernels(onnxBackendFor(options, logger), { logger }) as OnnxKernels;
}

/**
 * The onnx backend for `options`, unbound: the provider and kernel path chosen and probed (see
 * {@link createOnnxKernels}); `KVFold.backend('onnx')` binds it to its kernel registry.
 * @throws ConfigError, BackendUnavailableError as {@link createOnnxKernels}.
 */
export function onnxBackendFor(options: OnnxBackendOptions = {}, logger: Logger = silentLogger): KernelBackend<OnnxTensor> {
  checkOptions(options);
  const fallback = options.fallback ?? true;
  const nativeMode = options.native ?? 'auto';
  const fallbacks: string[] = [];
  const onnxruntimeNode = ortPackageVersion();
  const degrade = (reason: string, details: Record<string, unknown>, cause?: unknown, strict = !fallback): void => {
    if (strict) throw new BackendUnavailableError(`onnx backend: ${reason}`, details, cause);
    fallbacks.push(reason);
    logger.warn(`onnx backend: ${reason}`, details);
  };

  let ep: 'cpu' | 'cuda' = options.executionProvider ?? 'cpu';
  const config = (): SessionConfig => ({ executionProvider: ep, threads: options.threads ?? 0, deviceId: options.deviceId ?? 0 });

  if (ep === 'cuda') {
    const problem = cudaUnavailableReason(config());
    if (problem) {
      degrade(`${problem.reason}; running on CPU`, { requested: 'cuda', ...problem.details }, problem.cause);
      ep = 'cpu';
    }
  }

  let factory: SessionFactory = new OrtNodeSessionFactory(config());
  let kernelPath: KernelPath = 'function-bodies';
  if (nativeMode !== 'off') {
    const dir = options.nativeDir ?? defaultNativeDir();
    // `require` makes every native problem an error; `auto` logs it and keeps the function bodies.
    const strict = nativeMode === 'require';
    try {
      const manifest = readManifest(dir);
      if (!manifest) {
        if (strict) degrade(`native ai.kvfold kernels are not built in ${dir}; ${BUILD_HINT}`, { nativeDir: dir }, undefined, true);
        logger.info(`onnx backend: native ai.kvfold kernels not built (${dir}); running the function bodies`);
      } else {
        const built = nativeIncompatibility(manifest, onnxruntimeNode);
        if (built) throw new NativeProblem(`${built}; ${BUILD_HINT.replace('build it', 'rebuild it')}`, { built: manifest.onnxruntimeNode, installed: onnxruntimeNode });
        // Refused names are errors, never fallbacks: a manifest pointing out of its folder was tampered with.
        nativeFile(dir, 'addon', manifest.addon);
        nativeFile(dir, 'cpuLibrary', manifest.cpuLibrary);
        let addon;
        try {
          addon = loadAddon(dir, manifest);
        } catch (e) {
          if (e instanceof BackendUnavailableError) throw e;
          throw new NativeProblem(`the native addon in ${dir} does not load (${(e as Error).message}); ${BUILD_HINT.replace('build it', 'rebuild it')}`, {}, e);
        }
        const runs = nativeIncompatibility(manifest, onnxruntimeNode, addon.ortVersion());
        if (runs) throw new NativeProblem(`${runs}; ${BUILD_HINT.replace('build it', 'rebuild it')}`, { reported: addon.ortVersion(), installed: onnxruntimeNode });
        // The addon guards this too: ORT hands out no API table newer than its own release.
        if (!addon.apiAvailable || addon.apiVersion !== manifest.ortApiVersion) {
          throw new NativeProblem(
            `the native addon was compiled with ORT API ${addon.apiVersion} headers, which libonnxruntime ${addon.ortVersion()} (API ${ortApiOf(addon.ortVersion())}) ${addon.apiAvailable ? 'provides, but the manifest records API ' + manifest.ortApiVersion : 'does not provide'}; ${BUILD_HINT.replace('build it', 'rebuild it')}`,
            { addonApi: addon.apiVersion, manifestApi: manifest.ortApiVersion, runtime: addon.ortVersion() },
          );
        }
        const useCuda = ep === 'cuda' && manifest.cudaLibrary !== undefined;
        const lib = useCuda ? nativeFile(dir, 'cudaLibrary', manifest.cudaLibrary) : nativeFile(dir, 'cpuLibrary', manifest.cpuLibrary);
        const nf = new NativeSessionFactory(addon, lib, config());
        try {
          probe(nf, true);
        } catch (e) {
          throw new NativeProblem(`the native custom-op library ${lib} failed to register or run (${(e as Error).message})`, { library: lib }, e);
        }
        factory = nf;
        kernelPath = useCuda ? 'native-cuda' : 'native-cpu';
        if (ep === 'cuda' && !useCuda) degrade('the native build has no CUDA kernels (nvcc was absent when it was built); ai.kvfold ops run their CPU kernels', { nativeDir: dir }, undefined, false);
      }
    } catch (e) {
      if (e instanceof BackendUnavailableError) throw e;
      const p = e instanceof NativeProblem ? e : new NativeProblem(`the native build in ${dir} is unusable (${(e as Error).message}); ${BUILD_HINT}`, {}, e);
      degrade(`${p.message}; ${strict ? 'native: "require" was set' : 'running the function bodies'}`, { nativeDir: dir, ...p.details }, p.cause, strict);
    }
  }

  const wantObserve = options.observeKernel ?? 'auto';
  const observeNative = kernelPath !== 'function-bodies' && (wantObserve === 'native' || (wantObserve === 'auto' && kernelPath === 'native-cuda'));
  const observePath: KernelPath = observeNative ? kernelPath : 'function-bodies';
  const backend = onnxKernelBackend(
    factory,
    { onnxruntimeNode, executionProvider: ep, kernelPath, observePath, fallbacks },
    options.observeBlock ?? OBSERVE_BLOCK,
    observePath === kernelPath ? undefined : new OrtNodeSessionFactory(config()),
  );
  logger.info(`onnx backend: ${backend.describe()}`);
  return backend;
}

/** The onnx backend definition (registry name `onnx`). */
export const onnxBackend = defineBackend<OnnxBackendOptions>({
  name: 'onnx',
  description: 'ONNX Runtime (onnxruntime-node): kernels as ONNX graphs with ai.kvfold custom ops; CPU or CUDA EP; native kernels when built.',
  schema: onnxOptionsSchema,
  async create(options, services) {
    // Options come from a config here: whatever slipped past the schema, no native folder is taken from it.
    const { nativeDir: _dir, allowNativePaths: _allow, ...fromConfig } = options ?? {};
    return onnxBackendFor(fromConfig, services.logger) as KernelBackend<unknown>;
  },
});
