import { injectable } from 'tsyringe';
import { NameClashError, UnknownKernelError } from './errors.js';
import type { AnyKernelDefinition, AnyKernelImplementation } from './kernel-definition.js';
import { BUILTIN_KERNELS } from './kernels/index.js';

/** A kernel implementation a plugin contributes to a backend it does not own. */
export interface KernelImplementationEntry {
  /** Backend name the implementation is for (`tfjs`, `onnx`, ...). */
  readonly backend: string;
  /** Kernel it implements (a built-in or a plugin's kernel). */
  readonly kernel: string;
  /** The implementation; it receives the call the kernel's definition validated. */
  readonly implementation: AnyKernelImplementation;
}

/**
 * The kernels one `KVFold` instance knows: every definition (the built-in ones, then the plugins'), and
 * implementations that plugins add to backends, keyed by (backend, kernel) as in TensorFlow.js's kernel
 * registry. Backends bring their own implementations when they are created; these entries come on top.
 */
@injectable()
export class KernelRegistry {
  private readonly defs = new Map<string, { readonly definition: AnyKernelDefinition; readonly owner: string }>();
  private readonly impls = new Map<string, Map<string, { readonly implementation: AnyKernelImplementation; readonly owner: string }>>();

  /** A registry holding the built-in kernels; {@link KVFold} makes one per instance. */
  constructor() {
    for (const d of BUILTIN_KERNELS) this.define(d, '@kvfold/core');
  }

  /**
   * Add a kernel definition; `owner` names its plugin in errors.
   * @throws NameClashError when the name is taken.
   */
  define(definition: AnyKernelDefinition, owner: string): void {
    const earlier = this.defs.get(definition.name);
    if (earlier) throw new NameClashError('kernel', definition.name, earlier.owner, owner);
    this.defs.set(definition.name, { definition, owner });
  }

  /**
   * Add a plugin's implementation of a kernel for one backend (it replaces the backend's own, if any).
   * @throws NameClashError when another plugin already implemented that kernel for that backend.
   */
  implement(entry: KernelImplementationEntry, owner: string): void {
    let forBackend = this.impls.get(entry.backend);
    if (!forBackend) this.impls.set(entry.backend, (forBackend = new Map()));
    const earlier = forBackend.get(entry.kernel);
    if (earlier) throw new NameClashError('kernel', `${entry.kernel} (on ${entry.backend})`, earlier.owner, owner);
    forBackend.set(entry.kernel, { implementation: entry.implementation, owner });
  }

  /**
   * Check that plugins could add these definitions and implementations (no name taken, none given twice),
   * without adding anything: what all-or-nothing plugin registration checks first.
   * @throws NameClashError naming both owners.
   */
  checkAdditions(additions: readonly { readonly owner: string; readonly definitions: readonly AnyKernelDefinition[]; readonly implementations: readonly KernelImplementationEntry[] }[]): void {
    const defs = new Map([...this.defs].map(([name, e]) => [name, e.owner]));
    const impls = new Map<string, string>();
    for (const [backend, m] of this.impls) for (const [kernel, e] of m) impls.set(`${kernel} (on ${backend})`, e.owner);
    for (const { owner, definitions, implementations } of additions) {
      for (const d of definitions) {
        const earlier = defs.get(d.name);
        if (earlier !== undefined) throw new NameClashError('kernel', d.name, earlier, owner);
        defs.set(d.name, owner);
      }
      for (const e of implementations) {
        const key = `${e.kernel} (on ${e.backend})`;
        const earlier = impls.get(key);
        if (earlier !== undefined) throw new NameClashError('kernel', key, earlier, owner);
        impls.set(key, owner);
      }
    }
  }

  /** Defined kernel names, sorted. */
  names(): string[] {
    return [...this.defs.keys()].sort();
  }

  /** Every definition, built-in first, in registration order. */
  definitions(): AnyKernelDefinition[] {
    return [...this.defs.values()].map((e) => e.definition);
  }

  /** The definition of `name`. @throws UnknownKernelError */
  definition(name: string): AnyKernelDefinition {
    const d = this.defs.get(name);
    if (!d) throw new UnknownKernelError(name, this.names());
    return d.definition;
  }

  /** Implementations plugins added for `backend`, by kernel name. */
  implementationsFor(backend: string): Record<string, AnyKernelImplementation> {
    const out: Record<string, AnyKernelImplementation> = {};
    for (const [kernel, e] of this.impls.get(backend) ?? []) out[kernel] = e.implementation;
    return out;
  }
}
