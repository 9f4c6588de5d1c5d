import { existsSync, realpathSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, isAbsolute, join, relative } from 'node:path';
import { BackendUnavailableError, ConfigError, ModelError, readJsonFile, type ConfigIssue } from '@kvfold/core';
import { ort } from './ort.js';
import type { OnnxTensor } from './tensor.js';

/**
 * Sessions: one ONNX model per kernel, run synchronously.
 *
 * KVKernels is a synchronous contract, and onnxruntime-node's public `InferenceSession.run` is async only
 * because it defers the (blocking, synchronous) native call with `setImmediate`. So this module drives the
 * package's own synchronous binding object (`onnxruntime-node/dist/binding.js`, the class the public
 * session wraps) — or, when the project's native addon is built, the addon's sessions, which register the
 * `ai.kvfold` custom-op library.
 * @module
 */

const require = createRequire(import.meta.url);

/** One loaded kernel model. */
export interface KernelSession {
  /** Kernel name (for messages). */
  readonly name: string;
  /**
   * Run the model; returns the requested outputs in order. An output given in `into` (same position as in
   * `outputs`) is written into that tensor, which must have the output's shape and type, and returned
   * itself: the caller supplies memory it reuses instead of ORT allocating and the binding copying.
   */
  run(feeds: Readonly<Record<string, OnnxTensor>>, outputs: readonly string[], into?: readonly (OnnxTensor | undefined)[]): OnnxTensor[];
  /** Free the native session. */
  release(): void;
}

/** Creates the sessions of every kernel with one configuration (execution provider, threads, custom ops). */
export interface SessionFactory {
  /** Load a model; `name` identifies the kernel in errors. */
  create(name: string, model: Uint8Array): KernelSession;
  /** Native `ai.kvfold` kernel invocations so far (only sessions with the custom-op library count them). */
  nativeKernelCalls?(): number;
  /**
   * The native CPU kernels' streaming threshold (see OnnxExtensions.nativeStreamingMinBytes): set when
   * `bytes >= 0`, the value before the call returned; -1 when the custom-op library cannot be loaded.
   */
  nativeStreamingMinBytes?(bytes: number): number;
}

/**
 * How to install onnxruntime-node, the optional peer dependency that runs this backend. Its install script
 * downloads CUDA provider files on linux-x64, which fails without internet access; skipping that download
 * keeps the CPU execution provider, which is bundled in the package.
 */
export const ORT_INSTALL_HINT =
  'install it next to @kvfold/backend-onnx with `npm install onnxruntime-node@1.30.0`; on a machine without internet access ' +
  'skip its CUDA download with `ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@1.30.0` ' +
  '(or `onnxruntime-node-install=skip` in the project\'s .npmrc); the CPU execution provider needs nothing else';

/**
 * Version of the installed onnxruntime-node package.
 * @throws BackendUnavailableError, with the install command, when onnxruntime-node is not installed.
 */
export function ortPackageVersion(): string {
  try {
    return (require('onnxruntime-node/package.json') as { version: string }).version;
  } catch (e) {
    throw new BackendUnavailableError(`the onnx backend needs onnxruntime-node, which is not installed: ${ORT_INSTALL_HINT}`, { engine: 'onnxruntime-node', install: 'npm install onnxruntime-node@1.30.0' }, e);
  }
}

/** Folder holding libonnxruntime.so.1 and onnxruntime_binding.node for this platform. */
export function ortBinDir(): string {
  return join(dirname(require.resolve('onnxruntime-node/package.json')), 'bin', 'napi-v6', process.platform, process.arch);
}

/** The provider libraries the CUDA EP needs next to libonnxruntime (onnxruntime-node's install script fetches them). */
export const CUDA_PROVIDER_FILES = ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'] as const;

/** Which CUDA provider files are missing from `binDir` (empty when the CUDA EP can be tried). */
export function missingCudaProviderFiles(binDir: string = ortBinDir()): string[] {
  return CUDA_PROVIDER_FILES.filter((f) => !existsSync(join(binDir, f)));
}

interface BindingSession {
  loadModel(buffer: ArrayBuffer, byteOffset: number, byteLength: number, options: Record<string, unknown>): void;
  run(feeds: Record<string, OnnxTensor>, fetches: Record<string, OnnxTensor | null>, options: Record<string, unknown>): Record<string, OnnxTensor>;
  dispose(): void;
}

interface BindingModule {
  binding: { InferenceSession: new () => BindingSession };
  initOrt: () => void;
}

let bindingModule: BindingModule | undefined;

/**
 * Load onnxruntime-node's synchronous binding.
 * @throws BackendUnavailableError when the binary cannot load or its shape is not the one this backend was written for.
 */
export function loadOrtBinding(): BindingModule {
  if (bindingModule) return bindingModule;
  let mod: BindingModule;
  try {
    mod = require('onnxruntime-node/dist/binding.js') as BindingModule;
  } catch (e) {
    throw new BackendUnavailableError(
      `onnxruntime-node could not load its native binding on ${process.platform}-${process.arch}: ${(e as Error).message}. ` +
        'Reinstall onnxruntime-node 1.30 for this platform, or use the "reference" or "tfjs" backend.',
      { engine: 'onnxruntime-node' },
      e,
    );
  }
  if (typeof mod?.binding?.InferenceSession !== 'function' || typeof mod.initOrt !== 'function') {
    throw new BackendUnavailableError(
      `onnxruntime-node ${ortPackageVersion()} has no synchronous InferenceSession binding where 1.30 has it; install onnxruntime-node 1.30.x`,
      { engine: 'onnxruntime-node', version: ortPackageVersion() },
    );
  }
  mod.initOrt();
  bindingModule = mod;
  return mod;
}

/** Session options shared by both session kinds. */
export interface SessionConfig {
  /** Execution provider actually used. */
  readonly executionProvider: 'cpu' | 'cuda';
  /** Intra-op threads (0 = ORT's default: one per core). */
  readonly threads: number;
  /** CUDA device ordinal. */
  readonly deviceId: number;
}

/**
 * Wrap an ORT load failure: the kernel models are generated by this package, so a model ORT refuses is
 * either a bug here or an onnxruntime-node this package does not support.
 */
export function modelLoadError(name: string, e: unknown): ModelError {
  return new ModelError(
    `onnx backend: ORT refused the generated model of kernel "${name}": ${(e as Error).message ?? String(e)}. ` +
      `This package targets onnxruntime-node 1.30 (installed: ${ortPackageVersion()}); pin onnxruntime-node@1.30.0 or report the kernel name as a bug.`,
    { kernel: name, onnxruntimeNode: ortPackageVersion() },
    e,
  );
}

/** Sessions of onnxruntime-node itself (no custom-op library: `ai.kvfold` ops run as their function bodies). */
export class OrtNodeSessionFactory implements SessionFactory {
  private readonly binding = loadOrtBinding().binding;

  constructor(private readonly config: SessionConfig) {}

  /** ORT session options for this configuration. */
  sessionOptions(): Record<string, unknown> {
    const ep = this.config.executionProvider === 'cuda' ? [{ name: 'cuda', deviceId: this.config.deviceId }] : ['cpu'];
    // Intra-op workers block instead of spinning: one session per kernel means one pool per kernel, and a
    // spinning pool competes with the next kernel's (see the native addon's CreateSession).
    const o: Record<string, unknown> = { executionProviders: ep, graphOptimizationLevel: 'all', logSeverityLevel: 3, extra: { session: { intra_op: { allow_spinning: '0' } } } };
    if (this.config.threads > 0) o.intraOpNumThreads = this.config.threads;
    return o;
  }

  create(name: string, model: Uint8Array): KernelSession {
    const s = new this.binding.InferenceSession();
    try {
      s.loadModel(model.buffer as ArrayBuffer, model.byteOffset, model.byteLength, this.sessionOptions());
    } catch (e) {
      throw modelLoadError(name, e);
    }
    return {
      name,
      run(feeds, outputs, into) {
        const fetches: Record<string, OnnxTensor | null> = {};
        outputs.forEach((o, i) => (fetches[o] = into?.[i] ?? null));
        const r = s.run(feeds as Record<string, OnnxTensor>, fetches, {});
        return outputs.map((o, i) => into?.[i] ?? r[o]!);
      },
      release() {
        s.dispose();
      },
    };
  }
}

/** A tensor as the native addon exchanges it. */
interface RawTensor {
  type: string;
  dims: number[];
  data: Float32Array | Int32Array | BigInt64Array;
}

/** The project's N-API addon (native/addon/kvfold_ort_addon.cc). */
export interface NativeAddon {
  /** Version string of the libonnxruntime the addon is linked against (`OrtGetApiBase()->GetVersionString()`). */
  ortVersion(): string;
  /** ORT_API_VERSION of the headers the addon was compiled with. */
  readonly apiVersion: number;
  /** Whether the loaded libonnxruntime provides {@link NativeAddon.apiVersion} (false: it is older than the headers). */
  readonly apiAvailable: boolean;
  /** Create a session with the custom-op library registered. */
  createSession(model: Uint8Array, options: { library: string; ep: 'cpu' | 'cuda'; threads: number; deviceId: number }): object;
  /** Run a session; outputs given in `into` are written into those arrays (same type and size) and returned as given. */
  run(session: object, inputNames: string[], inputs: RawTensor[], outputNames: string[], into?: (RawTensor | null)[]): RawTensor[];
  /** Free a session now (the garbage collector would otherwise do it). */
  release(session: object): void;
  /** Kernel invocations counted by the loaded custom-op library at `library` (-1 when ORT has not loaded it). */
  opsCalls(library: string): number;
  /**
   * The custom-op library's streaming threshold before the call, set when `bytes >= 0` (loads it; -1 when it cannot
   * be loaded). Absent from addons built before it existed.
   */
  streamingMinBytes?(library: string, bytes: number): number;
}

/** Sessions created by the native addon, with the `ai.kvfold` CPU (and CUDA) kernels registered. */
export class NativeSessionFactory implements SessionFactory {
  constructor(
    private readonly addon: NativeAddon,
    private readonly library: string,
    private readonly config: SessionConfig,
  ) {}

  nativeKernelCalls(): number {
    return this.addon.opsCalls(this.library);
  }

  nativeStreamingMinBytes(bytes: number): number {
    // An addon from an older native build has no such call: report "no threshold" rather than throw.
    return this.addon.streamingMinBytes?.(this.library, bytes) ?? -1;
  }

  create(name: string, model: Uint8Array): KernelSession {
    let handle: object;
    try {
      handle = this.addon.createSession(model, {
        library: this.library,
        ep: this.config.executionProvider,
        threads: this.config.threads,
        deviceId: this.config.deviceId,
      });
    } catch (e) {
      throw modelLoadError(name, e);
    }
    const addon = this.addon;
    return {
      name,
      run(feeds, outputs, into) {
        const names = Object.keys(feeds);
        const raw = (t: OnnxTensor): RawTensor => ({ type: t.type, dims: [...t.dims], data: t.data as RawTensor['data'] });
        const inputs = names.map((n) => raw(feeds[n]!));
        const r = addon.run(handle, names, inputs, [...outputs], into ? outputs.map((_, i) => (into[i] ? raw(into[i]) : null)) : undefined);
        return r.map((t, i) => into?.[i] ?? new ort.Tensor(t.type as 'float32', t.data as Float32Array, t.dims));
      },
      release() {
        addon.release(handle);
      },
    };
  }
}

/** What a native build wrote next to its binaries (native/build/manifest.json). */
export interface NativeManifest {
  /** onnxruntime-node version whose libonnxruntime the addon was linked against. */
  readonly onnxruntimeNode: string;
  /** ORT_API_VERSION of the headers used. */
  readonly ortApiVersion: number;
  /** Addon file name. */
  readonly addon: string;
  /** CPU custom-op library file name. */
  readonly cpuLibrary: string;
  /** CUDA custom-op library (CPU + CUDA kernels) file name, when nvcc was available. */
  readonly cudaLibrary?: string;
  /** Build date (ISO). */
  readonly builtAt: string;
}

/**
 * Read a build manifest, or undefined when the folder holds none.
 * @throws ConfigError naming the file, line and column when it is not valid JSON, or naming the field
 *   when a field has the wrong type.
 */
export function readManifest(dir: string): NativeManifest | undefined {
  const f = join(dir, 'manifest.json');
  if (!existsSync(f)) return undefined;
  const m = readJsonFile(f, { what: 'native build manifest', maxBytes: 64 * 1024 });
  const issues: ConfigIssue[] = [];
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new ConfigError([{ path: '', rule: 'type', message: 'must be a JSON object' }], f);
  const v = m as Record<string, unknown>;
  for (const k of ['onnxruntimeNode', 'addon', 'cpuLibrary', 'builtAt'] as const) if (typeof v[k] !== 'string') issues.push({ path: `/${k}`, rule: 'type', message: 'must be a string' });
  if (typeof v.ortApiVersion !== 'number') issues.push({ path: '/ortApiVersion', rule: 'type', message: 'must be a number' });
  if (v.cudaLibrary !== undefined && typeof v.cudaLibrary !== 'string') issues.push({ path: '/cudaLibrary', rule: 'type', message: 'must be a string' });
  if (issues.length > 0) throw new ConfigError(issues, f);
  return v as unknown as NativeManifest;
}

/** File endings each manifest field may name: the addon is an N-API module, the libraries shared objects. */
const NATIVE_ENDINGS = { addon: ['.node'], cpuLibrary: ['.so', '.dylib', '.dll'], cudaLibrary: ['.so', '.dylib', '.dll'] } as const;

/**
 * The absolute path of a file a manifest names, refused unless it is a plain file name (no folder part,
 * no `..`, not absolute) with the expected ending, and the file, symlinks resolved, lies inside `dir`
 * (itself resolved). A plain name with no file behind it is returned as is (loading it fails like an
 * incomplete build). Nothing is loaded here.
 * @throws BackendUnavailableError naming `nativeDir` and the manifest field.
 */
export function nativeFile(dir: string, field: keyof typeof NATIVE_ENDINGS, name: unknown): string {
  const refuse = (why: string): never => {
    throw new BackendUnavailableError(
      `onnx backend: refusing to load the native ${field} ${JSON.stringify(name)} named by ${join(dir, 'manifest.json')} (nativeDir): ${why}`,
      { option: 'nativeDir', nativeDir: dir, field, value: name },
    );
  };
  if (typeof name !== 'string' || name.length === 0) return refuse('it is not a file name');
  if (name !== basename(name) || name.includes('/') || name.includes('\\') || name === '.' || name === '..' || isAbsolute(name) || name.includes('\0')) {
    return refuse('a manifest names files inside its own folder only (no folder part, no "..", not absolute)');
  }
  if (!NATIVE_ENDINGS[field].some((e) => name.endsWith(e))) return refuse(`it must end with ${NATIVE_ENDINGS[field].join(' or ')}`);
  // A plain name that does not exist yet can only fail to load, like an incomplete build: no refusal.
  if (!existsSync(join(dir, name))) return join(dir, name);
  let root: string;
  let file: string;
  try {
    root = realpathSync(dir);
    file = realpathSync(join(dir, name));
  } catch (e) {
    return refuse(`it cannot be resolved (${(e as Error).message})`);
  }
  const r = relative(root, file);
  if (r === '' || r.startsWith('..') || isAbsolute(r)) return refuse(`it resolves to ${file}, outside ${root} (a symlink out of the folder)`);
  if (!statSync(file).isFile()) return refuse('it is not a regular file');
  return file;
}

/**
 * The newest ORT C API version a release provides: ORT numbers its C API after the minor release
 * (1.29 → API 29, 1.30 → API 30). NaN when `version` is not `major.minor[.patch]`.
 */
export function ortApiOf(version: string): number {
  const m = /^(\d+)\.(\d+)/.exec(version);
  return m ? Number(m[2]) : NaN;
}

/**
 * Check a native build against the installed onnxruntime-node. The custom-op ABI is versioned, but the
 * addon is linked to one libonnxruntime file and must run on the same release as onnxruntime-node, and
 * the headers it was compiled with must not be newer than that release's C API.
 * @param manifest what the build recorded.
 * @param installed the installed onnxruntime-node version ({@link ortPackageVersion}).
 * @param addonReports the libonnxruntime version the loaded addon reports, once it is loaded.
 * @returns undefined when compatible, else the reason.
 */
export function nativeIncompatibility(manifest: NativeManifest, installed: string, addonReports?: string): string | undefined {
  if (manifest.onnxruntimeNode !== installed) {
    return `the native library was built for onnxruntime-node ${manifest.onnxruntimeNode}, but ${installed} is installed`;
  }
  if (!(manifest.ortApiVersion <= ortApiOf(installed))) {
    return `the native library was compiled with ORT API ${manifest.ortApiVersion} headers, but onnxruntime-node ${installed} provides API ${ortApiOf(installed)} at most`;
  }
  if (addonReports !== undefined && addonReports !== installed) {
    return `the native addon runs on libonnxruntime ${addonReports}, but onnxruntime-node ${installed} is installed`;
  }
  return undefined;
}

/**
 * Load the native addon of a build folder (`require` of its `.node` file). The file name is checked with
 * {@link nativeFile} first: only a `.node` file inside `dir` is ever loaded.
 * @throws BackendUnavailableError when the manifest names anything else; whatever Node throws when the
 *   file is not a shared object or its libonnxruntime does not load.
 */
export function loadAddon(dir: string, manifest: NativeManifest): NativeAddon {
  return require(nativeFile(dir, 'addon', manifest.addon)) as NativeAddon;
}
