import { readFileSync } from 'node:fs';
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

/**
 * Check that a value is a plugin compatible with this core, naming `source` (a package name) in errors.
 * Structural checks (not only the brand) so a plugin built against another copy of core is accepted.
 */
export function assertPlugin(value: unknown, source: string): KVFoldPlugin {
  if (typeof value !== 'object' || value === null) throw new InvalidPluginError(source, `default export is ${value === null ? 'null' : typeof value}, not an object`);
  const v = value as Partial<KVFoldPlugin>;
  if (typeof v.name !== 'string' || v.name.length === 0) throw new InvalidPluginError(source, 'it has no "name" string');
  if (typeof v.pluginApiVersion !== 'number') throw new InvalidPluginError(source, 'it has no "pluginApiVersion" (was it made with definePlugin?)');
  if (v.pluginApiVersion !== PLUGIN_API_VERSION) {
    throw new IncompatiblePluginError(source, `plugin API ${v.pluginApiVersion}`, `plugin API ${PLUGIN_API_VERSION}`, changesSince(PLUGIN_API_CHANGES, v.pluginApiVersion, PLUGIN_API_VERSION));
  }
  if (!Array.isArray(v.policies) || !Array.isArray(v.backends)) throw new InvalidPluginError(source, '"policies" and "backends" must be arrays');
  for (const p of v.policies as unknown[]) {
    const d = p as Partial<PolicyDefinition>;
    if (typeof d !== 'object' || d === null || typeof d.name !== 'string' || typeof d.create !== 'function' || typeof d.schema !== 'object') {
      throw new InvalidPluginError(source, 'each policy needs a name, a schema and a create function');
    }
    if (d.specificationVersion !== SPECIFICATION_VERSION) {
      throw new IncompatiblePluginError(
        source,
        `policy specification ${String(d.specificationVersion)} (policy "${d.name}")`,
        `policy specification ${SPECIFICATION_VERSION}`,
        SPECIFICATION_CHANGES[SPECIFICATION_VERSION],
      );
    }
  }
  for (const b of v.backends as unknown[]) {
    const d = b as Partial<BackendDefinition>;
    if (typeof d !== 'object' || d === null || typeof d.name !== 'string' || typeof d.create !== 'function' || typeof d.schema !== 'object') {
      throw new InvalidPluginError(source, 'each backend needs a name, a schema and a create function');
    }
  }
  for (const k of (v.kernels ?? []) as unknown[]) {
    const d = k as Partial<AnyKernelDefinition>;
    if (typeof d !== 'object' || d === null || typeof d.name !== 'string' || typeof d.validate !== 'function' || typeof d.reference !== 'function') {
      throw new InvalidPluginError(source, 'each kernel needs a name, a validate function and a reference function (use defineKernel)');
    }
  }
  for (const e of (v.kernelImplementations ?? []) as unknown[]) {
    const d = e as Partial<KernelImplementationEntry>;
    if (typeof d !== 'object' || d === null || typeof d.backend !== 'string' || typeof d.kernel !== 'string' || typeof d.implementation?.run !== 'function') {
      throw new InvalidPluginError(source, 'each kernel implementation needs a backend name, a kernel name and an implementation with a run function');
    }
  }
  return value as KVFoldPlugin;
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

type Version = readonly [number, number, number];

/** `1.2.3`, `1.2`, `1`, `1.x`, `1.2.3-beta.1` → the numbers, with how many were given (wildcards stop the count). */
function parseVersion(text: string): { v: Version; given: number } | undefined {
  const m = /^v?(\d+|[x*])(?:\.(\d+|[x*]))?(?:\.(\d+|[x*]))?(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/i.exec(text);
  if (!m) return undefined;
  const parts = [m[1], m[2], m[3]];
  let given = 0;
  while (given < 3 && parts[given] !== undefined && !/^[x*]$/i.test(parts[given]!)) given++;
  const num = (i: number) => (i < given ? Number(parts[i]) : 0);
  return { v: [num(0), num(1), num(2)], given };
}

function cmp(a: Version, b: Version): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

/** Upper bound (exclusive) of a partial version `1.2` → `1.3.0`, `1` → `2.0.0`. */
function bump({ v, given }: { v: Version; given: number }): Version | undefined {
  if (given === 0) return undefined;
  if (given === 1) return [v[0] + 1, 0, 0];
  if (given === 2) return [v[0], v[1] + 1, 0];
  return undefined;
}

/** One comparator (`^1.2.0`, `>=1`, `1.x`, ...) tested against `version`; undefined when it is not understood. */
function testComparator(c: string, version: Version): boolean | undefined {
  const m = /^(\^|~|>=|<=|>|<|=)?\s*(.*)$/.exec(c)!;
  const op = m[1] ?? '';
  const parsed = parseVersion(m[2]!);
  if (!parsed) return undefined;
  const { v, given } = parsed;
  const upper = bump(parsed);
  switch (op) {
    case '':
    case '=':
      return given === 3 ? cmp(version, v) === 0 : cmp(version, v) >= 0 && (upper === undefined || cmp(version, upper) < 0);
    case '>=':
      return cmp(version, v) >= 0;
    case '>':
      return given === 3 ? cmp(version, v) > 0 : upper === undefined ? false : cmp(version, upper) >= 0;
    case '<':
      return cmp(version, v) < 0;
    case '<=':
      return given === 3 ? cmp(version, v) <= 0 : upper === undefined ? true : cmp(version, upper) < 0;
    case '~': {
      const hi: Version = given >= 2 ? [v[0], v[1] + 1, 0] : [v[0] + 1, 0, 0];
      return cmp(version, v) >= 0 && (given === 0 || cmp(version, hi) < 0);
    }
    case '^': {
      // Caret: the left-most non-zero part is fixed (npm semver rules, prerelease tags ignored).
      const hi: Version = v[0] > 0 || given <= 1 ? [v[0] + 1, 0, 0] : v[1] > 0 || given <= 2 ? [0, v[1] + 1, 0] : [0, 0, v[2] + 1];
      return cmp(version, v) >= 0 && (given === 0 || cmp(version, hi) < 0);
    }
    default:
      return undefined;
  }
}

/**
 * Whether `version` satisfies an npm range (`||` alternatives of space-separated comparators, `a - b`
 * hyphen ranges, `^`, `~`, `>=`, `<`, x-ranges; `workspace:` links are always satisfied when they carry
 * no version). Prerelease tags are ignored. Undefined when the range is not understood.
 */
function satisfies(versionText: string, range: string): boolean | undefined {
  const version = parseVersion(versionText)?.v;
  if (!version) return undefined;
  let r = range.trim();
  if (r.startsWith('workspace:')) {
    r = r.slice('workspace:'.length);
    if (r === '*' || r === '^' || r === '~' || r === '') return true;
  }
  let understood = true;
  for (const alt of r.split('||')) {
    const a = alt.trim();
    if (a === '' || a === '*' || a.toLowerCase() === 'x') return true;
    const hyphen = /^(\S+)\s+-\s+(\S+)$/.exec(a);
    const comparators = hyphen ? [`>=${hyphen[1]}`, `<=${hyphen[2]}`] : a.replace(/(\^|~|>=|<=|>|<|=)\s+/g, '$1').split(/\s+/);
    let all = true;
    for (const c of comparators) {
      const ok = testComparator(c, version);
      if (ok === undefined) understood = false;
      if (ok !== true) all = false;
    }
    if (all) return true;
  }
  return understood ? false : undefined;
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
