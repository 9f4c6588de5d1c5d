import 'reflect-metadata';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { container as rootContainer, type DependencyContainer } from 'tsyringe';
import type { BackendDefinition } from './backend.js';
import { compileSchema, composeSchema, validateAgainst, validateOptions, type KVFoldConfig, type RegistryView, type SchemaExtensions } from './config.js';
import { ConfigError, InvalidPluginError, KVFoldError, NameClashError, NotFoundError, PluginFailureError, UnknownPluginError } from './errors.js';
import { guardPolicy, type GuardOptions } from './guard.js';
import { bindKernels } from './kernel-dispatch.js';
import type { KernelBackend } from './kernel-backend.js';
import { KernelRegistry } from './kernel-registry.js';
import type { KVKernels, LayerCache } from './kernels.js';
import { silentLogger, type Logger } from './logger.js';
import { readJsonFile } from './json.js';
import { PLUGIN_API_VERSION, assertCoreRange, assertPlugin, incompatiblePluginApi, type KVFoldPlugin } from './plugin.js';
import { SPECIFICATION_VERSION, type JsonSchema, type KVCachePolicy, type Observation, type ObservationNeed, type PolicyContext, type PolicyDefinition } from './policy.js';
import { BackendRegistry, PolicyRegistry, type RegistryEntry } from './registry.js';
import { TOKENS } from './tokens.js';

/** Options of {@link KVFold.create}. */
export interface KVFoldOptions {
  /** Plugins registered up front (built-in policy packages export one each). */
  readonly plugins?: readonly KVFoldPlugin[];
  /** Logger of this instance; default silent. */
  readonly logger?: Logger;
  /** Extra top-level schema sections accepted in the config (e.g. the benchmark's). */
  readonly schemaExtensions?: SchemaExtensions;
  /** Input checks applied to every policy this instance creates. */
  readonly guard?: GuardOptions;
}

/** Options of {@link KVFold.loadPlugins}. */
export interface LoadPluginOptions {
  /**
   * The user's project: package names resolve in its `node_modules` and those of its parents up to the
   * nearest folder with a package.json (never above it); default `process.cwd()`.
   */
  readonly from?: string;
  /** Allow relative or absolute file paths as plugin specifiers. Off by default: configs load packages only. */
  readonly allowPaths?: boolean;
}

/** A configuration turned into live objects. */
export interface Configured {
  /** The validated config with defaults filled in. */
  readonly config: KVFoldConfig;
  /** The guarded policy. */
  readonly policy: KVCachePolicy;
  /** The backend's kernels. */
  readonly kernels: KVKernels<unknown>;
}

/**
 * One kvfold instance: its own DI container, policy and backend registries and logger. Instances share
 * nothing, so tests and applications can hold several side by side.
 */
export class KVFold {
  /** The instance's child container; register overrides of {@link TOKENS} here. */
  readonly container: DependencyContainer;
  private readonly extensions: SchemaExtensions;
  private readonly guardOptions: GuardOptions;
  private readonly loaded = new Map<string, { readonly plugin: KVFoldPlugin; readonly original: unknown; readonly source: string; readonly signature: string | undefined }>();
  private cachedSchema: JsonSchema | undefined;

  private constructor(options: KVFoldOptions) {
    this.container = rootContainer.createChildContainer();
    this.container.registerSingleton(PolicyRegistry);
    this.container.registerSingleton(BackendRegistry);
    this.container.registerSingleton(KernelRegistry);
    this.container.registerInstance(TOKENS.Logger, options.logger ?? silentLogger);
    this.extensions = options.schemaExtensions ?? {};
    this.guardOptions = options.guard ?? {};
  }

  /** Create an instance and register `options.plugins`. */
  static create(options: KVFoldOptions = {}): KVFold {
    const kv = new KVFold(options);
    kv.register((options.plugins ?? []).map((value) => ({ value, source: undefined })));
    return kv;
  }

  /** Policies registered in this instance. */
  get policies(): PolicyRegistry {
    return this.container.resolve(PolicyRegistry);
  }

  /** Backends registered in this instance. */
  get backends(): BackendRegistry {
    return this.container.resolve(BackendRegistry);
  }

  /** Kernels known to this instance: the built-in ones and those plugins define or implement. */
  get kernelRegistry(): KernelRegistry {
    return this.container.resolve(KernelRegistry);
  }

  /** This instance's logger. */
  get logger(): Logger {
    return this.container.resolve(TOKENS.Logger);
  }

  /**
   * Register a plugin's policies, backends and kernels. `source` names it in errors (default its name).
   * Registration is all-or-nothing: the plugin is checked and copied ({@link assertPlugin}), every name
   * (policies, backends, kernels and kernel implementations) is checked against what is registered, and
   * every options schema (and the composed config schema) is compiled before anything is registered, so a
   * failure leaves this instance as it was.
   * Registering the same plugin again (the same object, or an identical plugin under the same name from
   * the same source: one package reached as two module instances) is a no-op; any other plugin under a
   * name already taken is a clash.
   * @throws InvalidPluginError, IncompatiblePluginError, NameClashError
   */
  use(plugin: KVFoldPlugin, source?: string): this {
    this.register([{ value: plugin, source }]);
    return this;
  }

  /** Check a batch of plugins, then register all of them or none. */
  private register(batch: readonly { readonly value: unknown; readonly source: string | undefined }[]): void {
    const accepted: { readonly plugin: KVFoldPlugin; readonly original: unknown; readonly source: string; readonly signature: string | undefined }[] = [];
    for (const { value, source } of batch) {
      const p = assertPlugin(value, source ?? 'the plugin passed to use()');
      const src = source ?? p.name;
      const signature = signatureOf(p);
      const earlier = this.loaded.get(p.name) ?? accepted.find((a) => a.plugin.name === p.name);
      if (earlier) {
        if (earlier.original === value || (earlier.source === src && signature !== undefined && earlier.signature === signature)) {
          this.logger.debug('plugin already registered', { plugin: p.name, source: src });
          continue;
        }
        throw new NameClashError('plugin', p.name, earlier.source, src);
      }
      accepted.push({ plugin: p, original: value, source: src, signature });
    }
    if (accepted.length === 0) return;
    const policies = candidate(this.policies, 'policy', accepted.flatMap((a) => a.plugin.policies.map((definition) => ({ definition, owner: a.source }))));
    const backends = candidate(this.backends, 'backend', accepted.flatMap((a) => a.plugin.backends.map((definition) => ({ definition, owner: a.source }))));
    this.kernelRegistry.checkAdditions(accepted.map((a) => ({ owner: a.source, definitions: a.plugin.kernels ?? [], implementations: a.plugin.kernelImplementations ?? [] })));
    for (const a of accepted) {
      for (const [kind, defs] of [['policy', a.plugin.policies], ['backend', a.plugin.backends]] as const) {
        for (const d of defs) {
          try {
            compileSchema(d.schema, `${kind} "${d.name}"`);
          } catch (e) {
            throw new InvalidPluginError(a.source, `the options schema of ${kind} "${d.name}" does not compile (${(e as ConfigError).issues?.[0]?.message ?? (e as Error).message})`, e);
          }
        }
      }
    }
    const schema = composeSchema(policies, backends, this.extensions);
    try {
      compileSchema(schema, 'the composed configuration');
    } catch (e) {
      throw new InvalidPluginError(accepted.map((a) => a.source).join(', '), `its schemas break the composed configuration schema (${(e as ConfigError).issues?.[0]?.message ?? (e as Error).message})`, e);
    }
    for (const a of accepted) {
      for (const d of a.plugin.policies) this.policies.register(d, a.source);
      for (const d of a.plugin.backends) this.backends.register(d, a.source);
      for (const d of a.plugin.kernels ?? []) this.kernelRegistry.define(d, a.source);
      for (const e of a.plugin.kernelImplementations ?? []) this.kernelRegistry.implement(e, a.source);
      this.loaded.set(a.plugin.name, a);
      this.logger.debug('plugin registered', { plugin: a.plugin.name, policies: a.plugin.policies.map((d) => d.name), backends: a.plugin.backends.map((d) => d.name), kernels: (a.plugin.kernels ?? []).map((d) => d.name) });
    }
    this.cachedSchema = schema;
  }

  /** Names of the registered plugins. */
  plugins(): string[] {
    return [...this.loaded.keys()];
  }

  /** The configuration schema composed from everything registered now. */
  schema(): JsonSchema {
    this.cachedSchema ??= composeSchema(this.policies, this.backends, this.extensions);
    return this.cachedSchema;
  }

  /**
   * Validate a configuration document and fill in defaults.
   * @throws ConfigError naming each offending JSON path, rule and allowed values.
   */
  validate(config: unknown): KVFoldConfig {
    return validateAgainst<KVFoldConfig>(this.schema(), config);
  }

  /**
   * Create a policy by name with validated options (defaults filled), wrapped in input checks unless
   * `create.guard` is false (benchmarks time the policy alone).
   * @throws UnknownPolicyError, ConfigError; PluginFailureError when the definition's `create()` throws
   *   something other than a kvfold error; InvalidPluginError when it returns no policy.
   */
  policy(name: string, options: Record<string, unknown> = {}, create: { readonly guard?: boolean } = {}): KVCachePolicy {
    const policy = this.unguardedPolicy(name, options);
    return create.guard === false ? policy : guardPolicy(policy, this.guardOptions);
  }

  /** Validate the options once and build the policy; what wrappers get through `PolicyServices`. */
  private unguardedPolicy(name: string, options: Record<string, unknown>): KVCachePolicy {
    const def = this.policies.get(name) as PolicyDefinition<Record<string, unknown>>;
    const owner = ownerOf(this.policies, name);
    const opts = validateOptions<Record<string, unknown>>(def.schema, options, `options of policy "${name}"`);
    let created: unknown;
    try {
      created = def.create(opts, { policy: (inner, innerOptions = {}) => this.unguardedPolicy(inner, innerOptions) });
    } catch (e) {
      if (e instanceof KVFoldError) throw e;
      throw new PluginFailureError(owner, `policy "${name}" create()`, e);
    }
    return checkPolicyObject(created, name, owner);
  }

  /**
   * Create a backend's kernels by name with validated options, bound to this instance's kernel registry:
   * every kernel call is validated by core, kernels the backend lacks run the reference through the host.
   * @throws UnknownBackendError, ConfigError, BackendUnavailableError; PluginFailureError when the
   *   definition's `create()` throws something other than a kvfold error; InvalidPluginError when it
   *   returns no backend.
   */
  async backend(name: string, options: Record<string, unknown> = {}): Promise<KVKernels<unknown>> {
    const def = this.backends.get(name) as BackendDefinition<Record<string, unknown>>;
    const owner = ownerOf(this.backends, name);
    const opts = validateAgainst<Record<string, unknown>>(def.schema, options, `options of backend "${name}"`);
    let created: KernelBackend<unknown>;
    try {
      created = await def.create(opts, { logger: this.logger });
    } catch (e) {
      if (e instanceof KVFoldError) throw e;
      throw new PluginFailureError(owner, `backend "${name}" create()`, e);
    }
    if (typeof created !== 'object' || created === null || typeof created.describe !== 'function' || typeof created.inspect !== 'function') {
      throw new InvalidPluginError(owner, `backend "${name}" create() returned ${created === null ? 'null' : typeof created}, not a KernelBackend (see defineKernelBackend)`);
    }
    const kernels = bindKernels(created, { registry: this.kernelRegistry, logger: this.logger });
    this.logger.info('backend ready', { backend: name, runs: kernels.describe() });
    return kernels;
  }

  /**
   * Load plugin packages by name, resolved from `options.from` (the user's project). Nothing is imported
   * before every name resolves to an installed package whose package.json declares
   * `"kvfold": { "pluginApiVersion": 2 }` (the current {@link PLUGIN_API_VERSION}); then all are imported, checked and registered together, or
   * none is registered.
   * @throws UnknownPluginError, InvalidPluginError, IncompatiblePluginError, NameClashError
   */
  async loadPlugins(specifiers: readonly string[], options: LoadPluginOptions = {}): Promise<void> {
    if (!Array.isArray(specifiers) || !specifiers.every((s) => typeof s === 'string')) {
      throw new UnknownPluginError(String(specifiers), 'plugins must be a list of package names');
    }
    const urls = specifiers.map((spec) => resolvePlugin(spec, options));
    const batch: { value: unknown; source: string }[] = [];
    for (const [i, spec] of specifiers.entries()) {
      let mod: { default?: unknown };
      try {
        mod = (await import(urls[i]!)) as { default?: unknown };
      } catch (err) {
        throw new UnknownPluginError(spec, `importing it failed: ${(err as Error)?.message ?? String(err)}`, err);
      }
      let value: unknown;
      try {
        value = mod.default;
      } catch (err) {
        throw new InvalidPluginError(spec, `reading its default export threw: ${(err as Error)?.message ?? String(err)}`, err);
      }
      batch.push({ value, source: spec });
    }
    this.register(batch);
  }

  /**
   * Validate a config, load its plugins, create its backend and policy.
   * @throws ConfigError and every error of {@link loadPlugins}, {@link backend} and {@link policy}
   */
  async configure(config: unknown, options: LoadPluginOptions = {}): Promise<Configured> {
    const plugins = (config as { plugins?: unknown } | null)?.plugins;
    if (Array.isArray(plugins) && plugins.every((p) => typeof p === 'string')) await this.loadPlugins(plugins as string[], options);
    const valid = this.validate(config);
    const backend = valid.backend ?? { name: 'reference' };
    const kernels = await this.backend(backend.name, backend.options ?? {});
    const policy = this.policy(valid.policy.name, valid.policy.options ?? {});
    return { config: valid, policy, kernels };
  }
}

function isPath(spec: string): boolean {
  return spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('file:') || isAbsolute(spec);
}

/** The owner recorded for `name` in a registry. */
function ownerOf<D extends { readonly name: string }>(registry: RegistryView<D>, name: string): string {
  return registry.list().find((e) => (e.definition as { name: string }).name === name)?.owner ?? name;
}

/** A stable description of what a plugin registers, to tell two module instances of one plugin from two plugins. */
function signatureOf(p: KVFoldPlugin): string | undefined {
  try {
    const defs = (d: readonly { readonly name: string; readonly description: string; readonly schema: JsonSchema }[]) => d.map((x) => [x.name, x.description, x.schema]);
    const kernels = (p.kernels ?? []).map((k) => [k.name, k.description]);
    const implementations = (p.kernelImplementations ?? []).map((e) => [e.backend, e.kernel]);
    return JSON.stringify([p.name, p.pluginApiVersion, defs(p.policies), defs(p.backends), kernels, implementations]);
  } catch {
    return undefined; // a schema JSON cannot print: never the same as anything
  }
}

/**
 * The registry as it would be with `added`: checks that no name is taken or given twice.
 * @throws NameClashError naming both owners.
 */
function candidate<D extends { readonly name: string }>(registry: RegistryView<D>, kind: 'policy' | 'backend', added: readonly RegistryEntry<D>[]): RegistryView<D> {
  const entries = new Map(registry.list().map((e) => [e.definition.name, e]));
  for (const e of added) {
    const clash = entries.get(e.definition.name);
    if (clash) throw new NameClashError(kind, e.definition.name, clash.owner, e.owner);
    entries.set(e.definition.name, e);
  }
  const names = [...entries.keys()].sort();
  return { names: () => names, list: () => names.map((n) => entries.get(n)!) };
}

const NEEDS: readonly ObservationNeed[] = ['attention', 'lastAttention', 'queries'];

/**
 * Check what a policy definition's `create()` returned and copy its fields once.
 * @throws InvalidPluginError naming the policy and the owner.
 */
function checkPolicyObject(value: unknown, name: string, owner: string): KVCachePolicy {
  if (typeof value !== 'object' || value === null) throw new InvalidPluginError(owner, `policy "${name}" create() returned ${value === null ? 'null' : typeof value}, not a policy`);
  let fields: { name: unknown; needs: unknown; spec: unknown; prefill: unknown; step: unknown };
  try {
    const v = value as Record<string, unknown>;
    fields = { name: v.name, needs: v.needs, spec: v.specificationVersion, prefill: v.prefill, step: v.step };
  } catch (e) {
    throw new InvalidPluginError(owner, `reading the policy "${name}" create() returned threw: ${(e as Error)?.message ?? String(e)}`, e);
  }
  const needs = fields.needs;
  if (typeof fields.prefill !== 'function' || typeof fields.step !== 'function' || typeof fields.name !== 'string' || !Array.isArray(needs) || !needs.every((n) => NEEDS.includes(n as ObservationNeed))) {
    throw new InvalidPluginError(owner, `policy "${name}" create() returned an object without a name, prefill, step and needs (a list of ${NEEDS.map((n) => `"${n}"`).join(', ')})`);
  }
  if (fields.spec !== SPECIFICATION_VERSION) throw new InvalidPluginError(owner, `policy "${name}" create() returned a policy of specification ${String(fields.spec)}, not ${SPECIFICATION_VERSION}`);
  const prefill = fields.prefill as KVCachePolicy['prefill'];
  const step = fields.step as KVCachePolicy['step'];
  return {
    specificationVersion: SPECIFICATION_VERSION,
    name: fields.name,
    needs: Object.freeze([...(needs as ObservationNeed[])]),
    prefill: <T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>) => Reflect.apply(prefill, value, [layer, observed, ctx]) as Promise<LayerCache<T>>,
    step: <T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>) => Reflect.apply(step, value, [layer, observed, ctx]) as Promise<LayerCache<T>>,
  };
}

/** Longest npm package name. */
const MAX_NAME = 214;
/** An npm package name: optional `@scope/`, lowercase URL-safe characters, no leading `.` or `_`. */
const PACKAGE_NAME = /^(?:@[a-z0-9-~][a-z0-9-._~]*\/)?[a-z0-9-~][a-z0-9-._~]*$/;

/** Whether `child` is `parent` or lies inside it (both absolute, symlinks already resolved). */
function inside(parent: string, child: string): boolean {
  const r = relative(parent, child);
  return r === '' || (!r.startsWith(`..${sep}`) && r !== '..' && !isAbsolute(r));
}

/**
 * The node_modules folders a package name is looked up in: from `from` up to the nearest folder that has a
 * package.json (the user's project root), never above it; only `from/node_modules` when no folder on the
 * way has a package.json. A package planted in some parent folder's node_modules is therefore never found.
 */
function searchFolders(from: string): string[] {
  const out: string[] = [];
  for (let dir = from; ; dir = dirname(dir)) {
    out.push(join(dir, 'node_modules'));
    if (existsSync(join(dir, 'package.json'))) return out;
    if (dirname(dir) === dir) return [join(from, 'node_modules')];
  }
}

/** Resolve a plugin specifier to an importable URL without executing anything. */
function resolvePlugin(spec: string, options: LoadPluginOptions): string {
  const from = resolve(options.from ?? process.cwd());
  if (typeof spec !== 'string' || spec.length === 0) throw new UnknownPluginError(String(spec), 'a plugin is named by a non-empty package name');
  if (isPath(spec)) {
    if (!options.allowPaths) throw new UnknownPluginError(spec, 'file paths are not loaded from configs unless allowPaths is set; publish the plugin as a package or pass { allowPaths: true }');
    const file = spec.startsWith('file:') ? new URL(spec).pathname : resolve(from, spec);
    if (!existsSync(file)) throw new UnknownPluginError(spec, `no file at ${file}`);
    return pathToFileURL(file).href;
  }
  if (spec.length > MAX_NAME || !PACKAGE_NAME.test(spec) || spec.split('/').some((part) => part === '.' || part === '..' || part === '@.' || part === '@..')) {
    throw new UnknownPluginError(spec, 'not a valid npm package name (lowercase letters, digits and - . _ ~, an optional @scope/, no leading "." or "_", at most 214 characters)');
  }
  const folders = searchFolders(from);
  for (const modules of folders) {
    const pkgDir = join(modules, spec);
    const pkgFile = join(pkgDir, 'package.json');
    if (!existsSync(pkgFile)) continue;
    const pkg = readManifest(spec, pkgFile);
    const marker = pkg.kvfold;
    const api = typeof marker === 'object' && marker !== null ? (marker as { pluginApiVersion?: unknown }).pluginApiVersion : undefined;
    if (api === undefined) {
      throw new InvalidPluginError(spec, `its package.json (${pkgFile}) lacks "kvfold": { "pluginApiVersion": ${PLUGIN_API_VERSION} }, so kvfold does not import it; a plugin package declares it`);
    }
    if (api !== PLUGIN_API_VERSION) throw incompatiblePluginApi(spec, api, `plugin API ${JSON.stringify(api)} (its package.json "kvfold.pluginApiVersion")`);
    // Checked before importing, so a plugin built for another kvfold major never runs its code here.
    assertCoreRange(spec, pkg.peerDependencies?.['@kvfold/core'] ?? pkg.dependencies?.['@kvfold/core']);
    let root: string;
    let file: string;
    const entry = entryOf(spec, pkg);
    try {
      root = realpathSync(pkgDir);
      file = realpathSync(resolve(pkgDir, entry));
    } catch {
      throw new UnknownPluginError(spec, `its entry point ${JSON.stringify(entry)} does not exist in ${pkgDir}`);
    }
    if (!inside(root, file)) throw new InvalidPluginError(spec, `its entry point ${JSON.stringify(entry)} resolves to ${file}, outside the package folder ${root}; kvfold imports only files inside the package`);
    if (!statSync(file).isFile()) throw new UnknownPluginError(spec, `its entry point ${file} is not a file`);
    return pathToFileURL(file).href;
  }
  throw new UnknownPluginError(spec, `package not found in ${folders.join(', ')} (kvfold looks only in the node_modules of the project at ${from}); install it there (npm install ${spec})`);
}


/** The fields of a plugin's package.json that loading reads. */
interface PluginManifest {
  readonly exports?: unknown;
  readonly module?: string;
  readonly main?: string;
  readonly kvfold?: unknown;
  readonly peerDependencies?: Readonly<Record<string, string>>;
  readonly dependencies?: Readonly<Record<string, string>>;
}

function readManifest(spec: string, pkgFile: string): PluginManifest {
  let pkg: unknown;
  try {
    pkg = readJsonFile(pkgFile, { what: `package.json of plugin "${spec}"`, maxBytes: 1 << 20 });
  } catch (err) {
    const why = err instanceof ConfigError ? err.issues.map((i) => i.message).join('; ') : err instanceof NotFoundError ? 'it does not exist' : (err as Error).message;
    throw new InvalidPluginError(spec, `its package.json (${pkgFile}) is not valid JSON: ${why}`, err);
  }
  if (typeof pkg !== 'object' || pkg === null || Array.isArray(pkg)) throw new InvalidPluginError(spec, `its package.json (${pkgFile}) is not an object`);
  return pkg as PluginManifest;
}

function entryOf(spec: string, pkg: PluginManifest): string {
  const pick = (e: unknown, depth = 0): string | undefined => {
    if (depth > 8) return undefined;
    if (typeof e === 'string') return e;
    if (e && typeof e === 'object' && !Array.isArray(e)) {
      const o = e as Record<string, unknown>;
      return pick(o['.'], depth + 1) ?? pick(o.import, depth + 1) ?? pick(o.node, depth + 1) ?? pick(o.default, depth + 1);
    }
    return undefined;
  };
  const main = typeof pkg.module === 'string' ? pkg.module : typeof pkg.main === 'string' ? pkg.main : undefined;
  const entry = pick(pkg.exports) ?? main ?? 'index.js';
  if (!entry) throw new UnknownPluginError(spec, 'its package.json names no entry point');
  if (isAbsolute(entry) || entry.startsWith('file:') || entry.includes('\0')) throw new InvalidPluginError(spec, `its entry point ${JSON.stringify(entry)} is not a path inside the package`);
  return entry;
}
