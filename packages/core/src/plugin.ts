import { readFileSync } from 'node:fs';
import semver from 'semver';
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
    throw new IncompatiblePluginError(source, `plugin API ${v.pluginApiVersion}`, `plugin API ${PLUGIN_API_VERSION}`);
  }
  if (!Array.isArray(v.policies) || !Array.isArray(v.backends)) throw new InvalidPluginError(source, '"policies" and "backends" must be arrays');
  for (const p of v.policies as unknown[]) {
    const d = p as Partial<PolicyDefinition>;
    if (typeof d !== 'object' || d === null || typeof d.name !== 'string' || typeof d.create !== 'function' || typeof d.schema !== 'object') {
      throw new InvalidPluginError(source, 'each policy needs a name, a schema and a create function');
    }
    if (d.specificationVersion !== SPECIFICATION_VERSION) {
      throw new IncompatiblePluginError(source, `policy specification ${String(d.specificationVersion)} (policy "${d.name}")`, `policy specification ${SPECIFICATION_VERSION}`);
    }
  }
  for (const b of v.backends as unknown[]) {
    const d = b as Partial<BackendDefinition>;
    if (typeof d !== 'object' || d === null || typeof d.name !== 'string' || typeof d.create !== 'function' || typeof d.schema !== 'object') {
      throw new InvalidPluginError(source, 'each backend needs a name, a schema and a create function');
    }
  }
  return value as KVFoldPlugin;
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
