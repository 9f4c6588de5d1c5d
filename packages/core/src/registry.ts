import { injectable } from 'tsyringe';
import type { BackendDefinition } from './backend.js';
import { NameClashError, UnknownBackendError, UnknownPolicyError } from './errors.js';
import type { PolicyDefinition } from './policy.js';

/** One registration: the definition and the plugin (or package) that registered it. */
export interface RegistryEntry<D> {
  /** The policy or backend definition. */
  readonly definition: D;
  /** Name of the plugin or package that registered it (shown in name clashes). */
  readonly owner: string;
}

/** A name-keyed registry that remembers who registered each entry, to name both sides of a clash. */
class NamedRegistry<D extends { readonly name: string }> {
  private readonly entries = new Map<string, RegistryEntry<D>>();
  constructor(
    private readonly kind: 'policy' | 'backend',
    private readonly unknown: (name: string, available: readonly string[]) => Error,
  ) {}

  /** Register `definition`; `owner` names its plugin in error messages. */
  register(definition: D, owner: string): void {
    const existing = this.entries.get(definition.name);
    if (existing) throw new NameClashError(this.kind, definition.name, existing.owner, owner);
    this.entries.set(definition.name, { definition, owner });
  }

  /** True when a definition is registered under `name`. */
  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** Registered names, sorted. */
  names(): string[] {
    return [...this.entries.keys()].sort();
  }

  /** All definitions with their owners, sorted by name. */
  list(): RegistryEntry<D>[] {
    return this.names().map((n) => this.entries.get(n)!);
  }

  /** The definition registered under `name`. @throws the registry's typed unknown-name error (UnknownPolicyError, UnknownBackendError) */
  get(name: string): D {
    const d = this.entries.get(name)?.definition;
    if (!d) throw this.unknown(name, this.names());
    return d;
  }
}

/** Policies known to one kvfold instance. */
@injectable()
export class PolicyRegistry extends NamedRegistry<PolicyDefinition<never>> {
  /** An empty registry; {@link KVFold} makes one per instance. */
  constructor() {
    super('policy', (name, available) => new UnknownPolicyError(name, available));
  }
}

/** Backends known to one kvfold instance. */
@injectable()
export class BackendRegistry extends NamedRegistry<BackendDefinition<never>> {
  /** An empty registry; {@link KVFold} makes one per instance. */
  constructor() {
    super('backend', (name, available) => new UnknownBackendError(name, available));
  }
}
