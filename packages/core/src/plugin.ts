import { readFileSync } from 'node:fs';
import type { BackendDefinition } from './backend.js';
import { IncompatiblePluginError, InvalidPluginError } from './errors.js';
import { SPECIFICATION_VERSION, type PolicyDefinition } from './policy.js';

/**
 * Version of the plugin contract. It changes only with a breaking change of core's public API
 * (the kvfold major version); a plugin stamped with another value is refused.
 */
export const PLUGIN_API_VERSION = 1;

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

/** The elements of an array-valued plugin field, bounded by {@link MAX_PLUGIN_DEFINITIONS}. */
function list(value: object, key: 'policies' | 'backends', source: string): unknown[] {
  const raw = read(value, key, source, `"${key}"`);
  if (!Array.isArray(raw)) throw new InvalidPluginError(source, '"policies" and "backends" must be arrays');
  const n = read(raw, 'length', source, `"${key}".length`) as number;
  if (n > MAX_PLUGIN_DEFINITIONS) throw new InvalidPluginError(source, `it declares ${n} ${key}; at most ${MAX_PLUGIN_DEFINITIONS} are loaded`);
  return Array.from({ length: n }, (_, i) => read(raw, i, source, `"${key}"[${i}]`));
}

/**
 * Check that a value is a plugin compatible with this core, naming `source` (a package name) in errors,
 * and return a frozen copy of it: every field and definition is read exactly once, here, so a getter or
 * proxy on the plugin object can neither throw later nor answer differently. Structural checks (not only
 * the brand) so a plugin built against another copy of core is accepted.
 * @throws InvalidPluginError (also when reading a field throws), IncompatiblePluginError
 */
export function assertPlugin(value: unknown, source: string): KVFoldPlugin {
  if (typeof value !== 'object' || value === null) throw new InvalidPluginError(source, `default export is ${value === null ? 'null' : typeof value}, not an object`);
  const name = read(value, 'name', source, '"name"');
  if (typeof name !== 'string' || name.length === 0) throw new InvalidPluginError(source, 'it has no "name" string');
  const apiVersion = read(value, 'pluginApiVersion', source, '"pluginApiVersion"');
  if (typeof apiVersion !== 'number') throw new InvalidPluginError(source, 'it has no "pluginApiVersion" (was it made with definePlugin?)');
  if (apiVersion !== PLUGIN_API_VERSION) {
    throw new IncompatiblePluginError(source, `plugin API ${apiVersion}`, `plugin API ${PLUGIN_API_VERSION}`);
  }
  const policies = list(value, 'policies', source).map((p, i) => snapshot(p, source, 'policy', i));
  const backends = list(value, 'backends', source).map((b, i) => snapshot(b, source, 'backend', i));
  for (const d of policies) {
    if (d.specificationVersion !== SPECIFICATION_VERSION) {
      throw new IncompatiblePluginError(source, `policy specification ${String(d.specificationVersion)} (policy "${String(d.name)}")`, `policy specification ${SPECIFICATION_VERSION}`);
    }
  }
  return Object.freeze({
    name,
    pluginApiVersion: PLUGIN_API_VERSION,
    policies: Object.freeze(policies.map((d) => Object.freeze(d))) as unknown as readonly PolicyDefinition<never>[],
    backends: Object.freeze(backends.map((d) => Object.freeze(d))) as unknown as readonly BackendDefinition<never>[],
    [PLUGIN_BRAND]: true as const,
  });
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
