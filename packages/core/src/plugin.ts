import { readFileSync } from 'node:fs';
import semver from 'semver';
import type { BackendDefinition } from './backend.js';
import { IncompatiblePluginError, InvalidPluginError } from './errors.js';
import type { AnyKernelDefinition } from './kernel-definition.js';
import type { KernelImplementationEntry } from './kernel-registry.js';
import { SPECIFICATION_CHANGES, SPECIFICATION_VERSION, type PolicyDefinition } from './policy.js';

/**
 * Version of the plugin contract. It changes only with a breaking change of core's public API
 * (the kvfold major version); a plugin stamped with another value is refused, with what changed.
 */
export const PLUGIN_API_VERSION = 2;

/** What each plugin API version changed from the one before: the message a refused plugin gets. */
export const PLUGIN_API_CHANGES: Readonly<Record<number, string>> = {
  2:
    'a backend\'s create() now returns a KernelBackend (tensor transfers, an inspect() and kernel implementations) that core validates and dispatches, ' +
    'instead of a KVKernels object that checked its own arguments; KVKernels.observe returns { attention, lastAttention } (was { sums, last }); ' +
    'plugins may add kernels (definePlugin({ kernels, kernelImplementations })). Rebuild the plugin against this @kvfold/core',
};

/** Marks objects made by {@link definePlugin}. */
const PLUGIN_BRAND = Symbol.for('kvfold.plugin');

/** What a plugin author writes. */
export interface PluginInit {
  /** The plugin's name, usually its npm package name. */
  readonly name: string;
  /** Policies the plugin contributes. */
  readonly policies?: readonly PolicyDefinition<never>[];
  /** Backends the plugin contributes. */
  readonly backends?: readonly BackendDefinition<never>[];
  /** Kernels the plugin defines (validation and reference implementation), e.g. for its own merge policy. */
  readonly kernels?: readonly AnyKernelDefinition[];
  /** Implementations the plugin adds to backends it does not own, for built-in or plugin kernels. */
  readonly kernelImplementations?: readonly KernelImplementationEntry[];
}

/** A plugin as {@link definePlugin} returns it: a package's default export. */
export interface KVFoldPlugin {
  /** The plugin's name. */
  readonly name: string;
  /** Plugin contract version the plugin was built against. */
  readonly pluginApiVersion: number;
  /** Policies the plugin contributes. */
  readonly policies: readonly PolicyDefinition<never>[];
  /** Backends the plugin contributes. */
  readonly backends: readonly BackendDefinition<never>[];
  /** Kernels the plugin defines. */
  readonly kernels?: readonly AnyKernelDefinition[];
  /** Implementations the plugin adds to other backends. */
  readonly kernelImplementations?: readonly KernelImplementationEntry[];
  /** Brand set by {@link definePlugin}. */
  readonly [PLUGIN_BRAND]: true;
}

/** Define a plugin; make it the default export of your package. */
export function definePlugin(init: PluginInit): KVFoldPlugin {
  return {
    name: init.name,
    pluginApiVersion: PLUGIN_API_VERSION,
    policies: init.policies ?? [],
    backends: init.backends ?? [],
    kernels: init.kernels ?? [],
    kernelImplementations: init.kernelImplementations ?? [],
    [PLUGIN_BRAND]: true,
  };
}

/** Most policies or backends one plugin may contribute (a bound on what loading reads from a plugin object). */
export const MAX_PLUGIN_DEFINITIONS = 256;

/**
 * Read `value[key]`, turning a throwing getter or proxy trap into an InvalidPluginError naming `what`.
 */
function read(value: object, key: PropertyKey, source: string, what: string): unknown {
  try {
    return (value as Record<PropertyKey, unknown>)[key];
  } catch (e) {
    throw new InvalidPluginError(source, `reading ${what} threw: ${e instanceof Error ? e.message : String(e)}`, e);
  }
}

/** A definition's fields read once into a plain object, so a getter cannot answer differently later. */
function snapshot(raw: unknown, source: string, kind: 'policy' | 'backend', index: number): Record<string, unknown> {
  const at = `${kind} #${index}`;
  if (typeof raw !== 'object' || raw === null) throw new InvalidPluginError(source, `each ${kind} needs a name, a schema and a create function (${at} is ${raw === null ? 'null' : typeof raw})`);
  const name = read(raw, 'name', source, `${at}.name`);
  const create = read(raw, 'create', source, `${at}.create`);
  const schema = read(raw, 'schema', source, `${at}.schema`);
  const description = read(raw, 'description', source, `${at}.description`);
  if (typeof name !== 'string' || name.length === 0 || typeof create !== 'function' || typeof schema !== 'object' || schema === null || Array.isArray(schema)) {
    throw new InvalidPluginError(source, `each ${kind} needs a name, a schema and a create function (${at}${typeof name === 'string' ? ` "${name}"` : ''} lacks one)`);
  }
  if (description !== undefined && typeof description !== 'string') throw new InvalidPluginError(source, `${kind} "${name}" has a description that is not a string`);
  const out: Record<string, unknown> = { name, description: description ?? '', schema, create: (...args: unknown[]) => (create as (...a: unknown[]) => unknown).apply(raw, args) };
  if (kind === 'policy') out.specificationVersion = read(raw, 'specificationVersion', source, `${at}.specificationVersion`);
  return out;
}

/** A kernel definition's fields read once (see {@link snapshot}); its functions keep their `this`. */
function snapshotKernel(raw: unknown, source: string, index: number): AnyKernelDefinition {
  const at = `kernel #${index}`;
  const bad = (): never => {
    throw new InvalidPluginError(source, `each kernel needs a name, a validate function and a reference function (use defineKernel; ${at} lacks one)`);
  };
  if (typeof raw !== 'object' || raw === null) bad();
  const o = raw as object;
  const name = read(o, 'name', source, `${at}.name`);
  const description = read(o, 'description', source, `${at}.description`);
  const validate = read(o, 'validate', source, `${at}.validate`);
  const contents = read(o, 'contents', source, `${at}.contents`);
  const reference = read(o, 'reference', source, `${at}.reference`);
  if (typeof name !== 'string' || name.length === 0 || typeof validate !== 'function' || typeof reference !== 'function') bad();
  if (contents !== undefined && typeof contents !== 'function') throw new InvalidPluginError(source, `kernel "${String(name)}" has a contents that is not a function`);
  const bind = (f: unknown) => (...args: unknown[]) => (f as (...a: unknown[]) => unknown).apply(o, args);
  return Object.freeze({
    name: name as string,
    description: typeof description === 'string' ? description : '',
    validate: bind(validate),
    ...(contents === undefined ? {} : { contents: bind(contents) }),
    reference: bind(reference),
  }) as AnyKernelDefinition;
}

/** A plugin's kernel implementation entry read once (see {@link snapshot}). */
function snapshotImplementation(raw: unknown, source: string, index: number): KernelImplementationEntry {
  const at = `kernelImplementations[${index}]`;
  const bad = (): never => {
    throw new InvalidPluginError(source, `each kernel implementation needs a backend name, a kernel name and an implementation with a run function (${at} lacks one)`);
  };
  if (typeof raw !== 'object' || raw === null) bad();
  const o = raw as object;
  const backend = read(o, 'backend', source, `${at}.backend`);
  const kernel = read(o, 'kernel', source, `${at}.kernel`);
  const impl = read(o, 'implementation', source, `${at}.implementation`);
  if (typeof backend !== 'string' || typeof kernel !== 'string' || typeof impl !== 'object' || impl === null) bad();
  const run = read(impl as object, 'run', source, `${at}.implementation.run`);
  const screen = read(impl as object, 'screen', source, `${at}.implementation.screen`);
  if (typeof run !== 'function' || (screen !== undefined && typeof screen !== 'function')) bad();
  const bind = (f: unknown) => (...args: unknown[]) => (f as (...a: unknown[]) => unknown).apply(impl, args);
  return Object.freeze({
    backend: backend as string,
    kernel: kernel as string,
    implementation: Object.freeze({ run: bind(run), ...(screen === undefined ? {} : { screen: bind(screen) }) }),
  }) as KernelImplementationEntry;
}

/** The elements of an array-valued plugin field, bounded by {@link MAX_PLUGIN_DEFINITIONS}; an optional field may be absent. */
function list(value: object, key: 'policies' | 'backends' | 'kernels' | 'kernelImplementations', source: string, optional = false): unknown[] {
  const raw = read(value, key, source, `"${key}"`);
  if (optional && raw === undefined) return [];
  if (!Array.isArray(raw)) throw new InvalidPluginError(source, optional ? `"${key}" must be an array when present` : '"policies" and "backends" must be arrays');
  const n = read(raw, 'length', source, `"${key}".length`) as number;
  if (n > MAX_PLUGIN_DEFINITIONS) throw new InvalidPluginError(source, `it declares ${n} ${key}; at most ${MAX_PLUGIN_DEFINITIONS} are loaded`);
  return Array.from({ length: n }, (_, i) => read(raw, i, source, `"${key}"[${i}]`));
}

/**
 * Check that a value is a plugin compatible with this core, naming `source` (a package name) in errors,
 * and return a frozen copy of it: every field and definition is read exactly once, here, so a getter or
 * proxy on the plugin object can neither throw later nor answer differently. Structural checks (not only
 * the brand) so a plugin built against another copy of core is accepted. A plugin built for another
 * plugin API or policy specification is refused with what changed since.
 * @throws InvalidPluginError (also when reading a field throws), IncompatiblePluginError
 */
export function assertPlugin(value: unknown, source: string): KVFoldPlugin {
  if (typeof value !== 'object' || value === null) throw new InvalidPluginError(source, `default export is ${value === null ? 'null' : typeof value}, not an object`);
  const name = read(value, 'name', source, '"name"');
  if (typeof name !== 'string' || name.length === 0) throw new InvalidPluginError(source, 'it has no "name" string');
  const apiVersion = read(value, 'pluginApiVersion', source, '"pluginApiVersion"');
  if (typeof apiVersion !== 'number') throw new InvalidPluginError(source, 'it has no "pluginApiVersion" (was it made with definePlugin?)');
  if (apiVersion !== PLUGIN_API_VERSION) throw incompatiblePluginApi(source, apiVersion, `plugin API ${apiVersion}`);
  const policies = list(value, 'policies', source).map((p, i) => snapshot(p, source, 'policy', i));
  const backends = list(value, 'backends', source).map((b, i) => snapshot(b, source, 'backend', i));
  const kernels = list(value, 'kernels', source, true).map((k, i) => snapshotKernel(k, source, i));
  const kernelImplementations = list(value, 'kernelImplementations', source, true).map((e, i) => snapshotImplementation(e, source, i));
  for (const d of policies) {
    if (d.specificationVersion !== SPECIFICATION_VERSION) {
      throw new IncompatiblePluginError(
        source,
        `policy specification ${String(d.specificationVersion)} (policy "${String(d.name)}")`,
        `policy specification ${SPECIFICATION_VERSION}`,
        SPECIFICATION_CHANGES[SPECIFICATION_VERSION],
      );
    }
  }
  return Object.freeze({
    name,
    pluginApiVersion: PLUGIN_API_VERSION,
    policies: Object.freeze(policies.map((d) => Object.freeze(d))) as unknown as readonly PolicyDefinition<never>[],
    backends: Object.freeze(backends.map((d) => Object.freeze(d))) as unknown as readonly BackendDefinition<never>[],
    kernels: Object.freeze(kernels),
    kernelImplementations: Object.freeze(kernelImplementations),
    [PLUGIN_BRAND]: true as const,
  });
}

/**
 * The IncompatiblePluginError for a plugin built for plugin API `found` (a number when it is one): it
 * lists what changed in every version since (for an older plugin), so the author knows what to update.
 * @param source - The plugin (package name).
 * @param found - The API version the plugin declares.
 * @param label - How to name what was found, e.g. `plugin API 1 (its package.json "kvfold.pluginApiVersion")`.
 */
export function incompatiblePluginApi(source: string, found: unknown, label: string): IncompatiblePluginError {
  const changes = typeof found === 'number' && Number.isInteger(found) && found >= 0 && found < PLUGIN_API_VERSION ? changesSince(PLUGIN_API_CHANGES, found, PLUGIN_API_VERSION) : undefined;
  return new IncompatiblePluginError(source, label, `plugin API ${PLUGIN_API_VERSION}`, changes);
}

/** The changes of every version after `from` up to `to`, joined (numbered contract versions). */
function changesSince(changes: Readonly<Record<number, string>>, from: number, to: number): string | undefined {
  const list: string[] = [];
  for (let v = from + 1; v <= to; v++) if (changes[v]) list.push(`(${v}) ${changes[v]}`);
  return list.length > 0 ? list.join('; ') : undefined;
}

let cachedVersion: string | undefined;

/** The version of this `@kvfold/core` (read from its package.json, next to `src/` and `dist/`). */
export function coreVersion(): string {
  cachedVersion ??= (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  return cachedVersion;
}

/**
 * Whether `version` satisfies an npm range, by npm's own `semver` (prerelease versions count as their
 * release). `workspace:` links are always satisfied when they carry no version. Undefined when the range
 * is not a valid npm range.
 */
function satisfies(version: string, range: string): boolean | undefined {
  let r = range.trim();
  if (r.startsWith('workspace:')) {
    r = r.slice('workspace:'.length);
    if (r === '*' || r === '^' || r === '~' || r === '') return true;
  }
  if (semver.validRange(r) === null) return undefined;
  return semver.satisfies(version, r, { includePrerelease: true });
}

/**
 * Check the `@kvfold/core` range a plugin package declares (its `peerDependencies`, else `dependencies`)
 * against this core's version. A plugin that declares none is accepted here and judged by
 * {@link assertPlugin} once imported.
 * @throws IncompatiblePluginError when this core's version is outside the range; InvalidPluginError
 *   when the range is not a valid npm range.
 */
export function assertCoreRange(source: string, range: string | undefined): void {
  if (range === undefined) return;
  const version = coreVersion();
  const ok = typeof range === 'string' ? satisfies(version, range) : undefined;
  if (ok === undefined) throw new InvalidPluginError(source, `its package.json declares @kvfold/core ${JSON.stringify(range)}, which is not an npm version range`);
  if (!ok) throw new IncompatiblePluginError(source, `@kvfold/core ${range}`, `@kvfold/core ${version}`);
}
