import 'reflect-metadata';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { container as rootContainer, type DependencyContainer } from 'tsyringe';
import type { BackendDefinition } from './backend.js';
import { composeSchema, validateAgainst, validateOptions, type KVFoldConfig, type SchemaExtensions } from './config.js';
import { InvalidPluginError, NameClashError, UnknownPluginError } from './errors.js';
import { guardPolicy, type GuardOptions } from './guard.js';
import { bindKernels } from './kernel-dispatch.js';
import { KernelRegistry } from './kernel-registry.js';
import type { KVKernels } from './kernels.js';
import { silentLogger, type Logger } from './logger.js';
import { assertCoreRange, assertPlugin, type KVFoldPlugin } from './plugin.js';
import type { JsonSchema, KVCachePolicy, PolicyDefinition } from './policy.js';
import { BackendRegistry, PolicyRegistry } from './registry.js';
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
  /** Directory whose `node_modules` resolve package names; default `process.cwd()`. */
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
  private readonly loaded = new Map<string, { readonly plugin: KVFoldPlugin; readonly source: string }>();
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
    for (const p of options.plugins ?? []) kv.use(p);
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
   * Registering the same plugin again (same object, or same name from the same source) is a no-op;
   * another plugin under a name already taken is a clash.
   * @throws InvalidPluginError, IncompatiblePluginError, NameClashError
   */
  use(plugin: KVFoldPlugin, source = plugin.name): this {
    const p = assertPlugin(plugin, source);
    const earlier = this.loaded.get(p.name);
    if (earlier) {
      // One package can reach us as two module instances (a bundled copy and node_modules), so the same
      // name from the same source counts as the same plugin.
      if (earlier.plugin === p || earlier.source === source) return this;
      throw new NameClashError('plugin', p.name, earlier.source, source);
    }
    for (const d of p.policies) this.policies.register(d as PolicyDefinition<never>, source);
    for (const d of p.backends) this.backends.register(d as BackendDefinition<never>, source);
    for (const d of p.kernels ?? []) this.kernelRegistry.define(d, source);
    for (const e of p.kernelImplementations ?? []) this.kernelRegistry.implement(e, source);
    this.loaded.set(p.name, { plugin: p, source });
    this.cachedSchema = undefined;
    this.logger.debug('plugin registered', { plugin: p.name, policies: p.policies.map((d) => d.name), backends: p.backends.map((d) => d.name) });
    return this;
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
   * @throws UnknownPolicyError, ConfigError
   */
  policy(name: string, options: Record<string, unknown> = {}, create: { readonly guard?: boolean } = {}): KVCachePolicy {
    const policy = this.unguardedPolicy(name, options);
    return create.guard === false ? policy : guardPolicy(policy, this.guardOptions);
  }

  /** Validate the options once and build the policy; what wrappers get through `PolicyServices`. */
  private unguardedPolicy(name: string, options: Record<string, unknown>): KVCachePolicy {
    const def = this.policies.get(name) as PolicyDefinition<Record<string, unknown>>;
    const opts = validateOptions<Record<string, unknown>>(def.schema, options, `options of policy "${name}"`);
    return def.create(opts, { policy: (inner, innerOptions = {}) => this.unguardedPolicy(inner, innerOptions) });
  }

  /**
   * Create a backend's kernels by name with validated options, bound to this instance's kernel registry:
   * every kernel call is validated by core, kernels the backend lacks run the reference through the host.
   * @throws UnknownBackendError, ConfigError, BackendUnavailableError
   */
  async backend(name: string, options: Record<string, unknown> = {}): Promise<KVKernels<unknown>> {
    const def = this.backends.get(name) as BackendDefinition<Record<string, unknown>>;
    const opts = validateAgainst<Record<string, unknown>>(def.schema, options, `options of backend "${name}"`);
    const kernels = bindKernels(await def.create(opts, { logger: this.logger }), { registry: this.kernelRegistry, logger: this.logger });
    this.logger.info('backend ready', { backend: name, runs: kernels.describe() });
    return kernels;
  }

  /**
   * Load plugin packages by name, resolved from `options.from` (the user's project).
   * @throws UnknownPluginError, InvalidPluginError, IncompatiblePluginError, NameClashError
   */
  async loadPlugins(specifiers: readonly string[], options: LoadPluginOptions = {}): Promise<void> {
    for (const spec of specifiers) {
      const url = resolvePlugin(spec, options);
      let mod: { default?: unknown };
      try {
        mod = (await import(url)) as { default?: unknown };
      } catch (err) {
        throw new UnknownPluginError(spec, `importing it failed: ${(err as Error).message}`, err);
      }
      this.use(assertPlugin(mod.default, spec), spec);
    }
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

/** Resolve a plugin specifier to an importable URL without executing anything. */
function resolvePlugin(spec: string, options: LoadPluginOptions): string {
  const from = resolve(options.from ?? process.cwd());
  if (isPath(spec)) {
    if (!options.allowPaths) throw new UnknownPluginError(spec, 'file paths are not loaded from configs unless allowPaths is set; publish the plugin as a package or pass { allowPaths: true }');
    const file = spec.startsWith('file:') ? new URL(spec).pathname : resolve(from, spec);
    if (!existsSync(file)) throw new UnknownPluginError(spec, `no file at ${file}`);
    return pathToFileURL(file).href;
  }
  if (!/^(@[a-z0-9._-]+\/)?[a-z0-9._-]+$/i.test(spec)) throw new UnknownPluginError(spec, 'not a valid npm package name');
  for (let dir = from; ; dir = dirname(dir)) {
    const pkgDir = join(dir, 'node_modules', spec);
    const pkgFile = join(pkgDir, 'package.json');
    if (existsSync(pkgFile)) {
      const pkg = readManifest(spec, pkgFile);
      // Checked before importing, so a plugin built for another kvfold major never runs its code here.
      assertCoreRange(spec, pkg.peerDependencies?.['@kvfold/core'] ?? pkg.dependencies?.['@kvfold/core']);
      return pathToFileURL(join(pkgDir, entryOf(spec, pkg))).href;
    }
    if (dirname(dir) === dir) break;
  }
  throw new UnknownPluginError(spec, `package not found in node_modules from ${from}; install it (npm install ${spec})`);
}

/** The fields of a plugin's package.json that loading reads. */
interface PluginManifest {
  readonly exports?: unknown;
  readonly module?: string;
  readonly main?: string;
  readonly peerDependencies?: Readonly<Record<string, string>>;
  readonly dependencies?: Readonly<Record<string, string>>;
}

function readManifest(spec: string, pkgFile: string): PluginManifest {
  let pkg: unknown;
  try {
    pkg = JSON.parse(readFileSync(pkgFile, 'utf8'));
  } catch (err) {
    throw new InvalidPluginError(spec, `its package.json (${pkgFile}) is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof pkg !== 'object' || pkg === null) throw new InvalidPluginError(spec, `its package.json (${pkgFile}) is not an object`);
  return pkg as PluginManifest;
}

function entryOf(spec: string, pkg: PluginManifest): string {
  const pick = (e: unknown): string | undefined => {
    if (typeof e === 'string') return e;
    if (e && typeof e === 'object') {
      const o = e as Record<string, unknown>;
      return pick(o['.']) ?? pick(o.import) ?? pick(o.node) ?? pick(o.default);
    }
    return undefined;
  };
  const entry = pick(pkg.exports) ?? pkg.module ?? pkg.main ?? 'index.js';
  if (!entry) throw new UnknownPluginError(spec, 'its package.json names no entry point');
  return entry;
}
