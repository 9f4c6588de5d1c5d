import { ShapeError, UnknownKernelError } from './errors.js';
import type { KernelBackend } from './kernel-backend.js';
import { ArgCheck, checkHostTensor } from './kernel-check.js';
import type { AnyKernelDefinition, AnyKernelImplementation, HostReader } from './kernel-definition.js';
import type { KernelRegistry } from './kernel-registry.js';
import type { KernelInfo, KVKernels } from './kernels.js';
import { BUILTIN_KERNELS, type BuiltinKernel } from './kernels/index.js';
import { silentLogger, type Logger } from './logger.js';
import type { HostTensor } from './tensor.js';

/** Options of {@link bindKernels}. */
export interface BindOptions {
  /** Where the kernel definitions (and plugins' extra implementations) come from; default the built-in kernels only. */
  readonly registry?: KernelRegistry;
  /** Receives one warning per kernel that runs the reference through the host. Default silent. */
  readonly logger?: Logger;
}


/** One kernel's validated call path. */
type Dispatch = (a?: unknown, b?: unknown, c?: unknown, d?: unknown, e?: unknown) => unknown;

/** True for a well-formed host tensor (what a reference implementation returns). */
function isHostTensor(v: unknown): v is HostTensor {
  if (typeof v !== 'object' || v === null) return false;
  const t = v as HostTensor;
  return (t.dtype === 'float32' && t.data instanceof Float32Array) || (t.dtype === 'int32' && t.data instanceof Int32Array);
}

/** Copy `v` with every leaf for which `convert` returns a value replaced by it (plain objects and arrays are walked). */
function mapLeaves(v: unknown, convert: (leaf: unknown) => unknown): unknown {
  const c = convert(v);
  if (c !== undefined) return c;
  if (Array.isArray(v)) return v.map((x) => mapLeaves(x, convert));
  if (typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = mapLeaves(x, convert);
    return out;
  }
  return v;
}

/** How {@link referenceOnHost} moves a backend's tensors to the host and back. */
export interface HostTransfer {
  /** Whether a value of the call is one of the backend's tensors. */
  isTensor(value: unknown): boolean;
  /** The tensor's contents on the host (a view or a copy; the reference only reads it). */
  read(tensor: unknown): HostTensor;
  /** A backend tensor holding a host tensor of the result. */
  upload(tensor: HostTensor): unknown;
}

/**
 * Run kernel `def`'s reference on host copies of a validated `call`: every backend tensor in it read to the host,
 * the reference run, every host tensor of its result uploaded. What core runs for a kernel a backend does not
 * implement; a backend's implementation may call it for the cases its own code leaves out.
 */
export function referenceOnHost(def: AnyKernelDefinition, call: unknown, io: HostTransfer): unknown {
  const out = def.reference(mapLeaves(call, (leaf) => (io.isTensor(leaf) ? io.read(leaf) : undefined)));
  const upload = (r: unknown): unknown => mapLeaves(r, (leaf) => (isHostTensor(leaf) ? io.upload(leaf) : undefined));
  return out instanceof Promise ? out.then(upload) : upload(out);
}

/** Bytes of a host tensor's data. */
function bytes(t: HostTensor): number {
  return t.data.byteLength;
}

/**
 * Turn a backend into `KVKernels`: every kernel call is validated once by its definition (shapes, dtypes,
 * options, then contents unless the implementation's `screen` vouches for them), then runs the backend's
 * implementation. A kernel the backend does not implement runs its reference on host copies of the
 * arguments, and the result is uploaded back; the first such call of each kernel logs a warning with what
 * it cost (bytes moved, milliseconds). Backends whose tensors are host tensors run the reference directly.
 */
export function bindKernels<T>(backend: KernelBackend<T>, options: BindOptions = {}): KVKernels<T> {
  const logger = options.logger ?? silentLogger;
  const defs = new Map<string, AnyKernelDefinition>();
  for (const d of options.registry ? options.registry.definitions() : BUILTIN_KERNELS) defs.set(d.name, d);
  const impls = new Map<string, AnyKernelImplementation>();
  for (const [name, impl] of Object.entries({ ...backend.kernels, ...options.registry?.implementationsFor(backend.name) })) {
    if (!impl) continue;
    if (!defs.has(name)) throw new UnknownKernelError(name, [...defs.keys()]);
    impls.set(name, impl);
  }
  const check = new ArgCheck(backend.inspect);
  const read: HostReader = backend.hostTensors ? (t) => t as HostTensor : (t) => backend.read(t as T);
  const isTensor = (v: unknown): boolean => typeof backend.inspect(v) !== 'string';
  const warned = new Set<string>();

  /** The reference on host copies: download every tensor argument, run, upload every tensor result. */
  const viaHost = (def: AnyKernelDefinition, call: unknown): unknown => {
    const t0 = performance.now();
    let down = 0;
    let up = 0;
    const io: HostTransfer = {
      isTensor,
      read: (leaf) => {
        const h = read(leaf);
        down += bytes(h);
        return h;
      },
      upload: (h) => {
        up += bytes(h);
        return backend.fromHost(h);
      },
    };
    const report = <R>(r: R): R => {
      if (!warned.has(def.name)) {
        warned.add(def.name);
        logger.warn(`kernel "${def.name}" has no ${backend.name} implementation; it runs the reference on the host`, {
          kernel: def.name,
          backend: backend.name,
          downloadedBytes: down,
          uploadedBytes: up,
          ms: Math.round((performance.now() - t0) * 1000) / 1000,
        });
      }
      return r;
    };
    const out = referenceOnHost(def, call, io);
    return out instanceof Promise ? out.then(report) : report(out);
  };

  /** Check the contents of a validated call (unless the implementation's screen vouches for them), then run it. */
  const runner = (name: string): ((call: unknown) => unknown) => {
    const def = defs.get(name);
    if (!def) throw new UnknownKernelError(name, [...defs.keys()]);
    const impl = impls.get(name);
    return (call) => {
      let note: unknown;
      if (def.contents) {
        const screened = impl?.screen?.(call);
        note = screened?.note;
        if (!screened?.valid) {
          def.contents(call, read);
          if (screened) throw new ShapeError(`${name}: the ${backend.name} backend's check of the arguments failed, but the host check found no problem`, { kernel: name });
        }
      }
      if (impl) return impl.run(call, note);
      return backend.hostTensors ? def.reference(call, backend.allocator) : viaHost(def, call);
    };
  };

  // Kernels by name for `run` (plugin kernels take any number of arguments).
  const general = new Map<string, (args: readonly unknown[]) => unknown>();
  const run = (name: string, args: readonly unknown[]): unknown => {
    let f = general.get(name);
    if (!f) {
      const go = runner(name);
      const def = defs.get(name)!;
      general.set(name, (f = (a) => go(def.validate(check, ...a))));
    }
    return f(args);
  };
  const methods: Record<string, unknown> = {};
  // The built-in kernels are the kernel methods of KVKernels (at most five arguments, passed as they come:
  // no argument array on the hot path); allFinite is the one async method.
  for (const def of BUILTIN_KERNELS) {
    if (!defs.has(def.name)) continue;
    const go = runner(def.name);
    const registered = defs.get(def.name)!;
    const f: Dispatch = (a, b, c, d, e) => go(registered.validate(check, a, b, c, d, e));
    methods[def.name] = def.name === 'allFinite' ? async (a: unknown, b: unknown, c: unknown) => f(a, b, c) : f;
  }
  const kernels: KVKernels<T> = {
    ...(methods as unknown as Pick<KVKernels<T>, BuiltinKernel>),
    backend: backend.name,
    describe: () => backend.describe(),
    fromHost: (tensor) => backend.fromHost(checkHostTensor(tensor, 'fromHost tensor')),
    toHost: (tensor) => {
      try {
        check.meta(tensor, 'toHost tensor');
      } catch (e) {
        return Promise.reject(e);
      }
      return backend.toHost(tensor);
    },
    shapeOf: (tensor) => check.meta(tensor, 'shapeOf tensor').shape,
    dtypeOf: (tensor) => check.meta(tensor, 'dtypeOf tensor').dtype,
    dispose: (...tensors) => backend.dispose(tensors.filter((t): t is T => t !== undefined)),
    run: <R>(kernel: string, ...args: readonly unknown[]) => run(kernel, args) as R,
    // Checked like any argument: a disposed or foreign tensor is refused with a typed error.
    ...(backend.writable ? { hostView: (tensor: T) => (check.meta(tensor, 'hostView tensor'), read(tensor)) } : {}),
    ...(backend.view
      ? { editView: (tensor: T, write = true) => (check.meta(tensor, 'editView tensor'), backend.view!(tensor, write)) }
      : backend.writable
        ? { editView: (tensor: T) => (check.meta(tensor, 'editView tensor'), read(tensor)) }
        : {}),
    kernels: (): KernelInfo[] =>
      [...defs.keys()].map((name) => ({ name, runs: impls.has(name) ? 'backend' : 'reference' })),
  };
  return Object.assign(kernels, backend.extensions ?? {});
}
