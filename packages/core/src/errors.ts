/**
 * Stable error codes. A code never changes meaning; tests and callers branch on it, not on the message.
 */
export const ErrorCode = {
  /** The configuration document does not match the composed schema. */
  Config: 'KVF_CONFIG',
  /** No policy is registered under the requested name. */
  UnknownPolicy: 'KVF_UNKNOWN_POLICY',
  /** No backend is registered under the requested name. */
  UnknownBackend: 'KVF_UNKNOWN_BACKEND',
  /** A plugin package could not be resolved or imported. */
  UnknownPlugin: 'KVF_UNKNOWN_PLUGIN',
  /** A plugin's default export does not satisfy the plugin contract. */
  InvalidPlugin: 'KVF_INVALID_PLUGIN',
  /** A plugin or policy was built against another kvfold specification version. */
  IncompatiblePlugin: 'KVF_INCOMPATIBLE_PLUGIN',
  /** Two registrations claim the same policy or backend name. */
  NameClash: 'KVF_NAME_CLASH',
  /** Tensor shapes disagree with each other or with what a kernel expects. */
  Shape: 'KVF_SHAPE',
  /** Keys or values hold NaN or an infinity. */
  NonFinite: 'KVF_NON_FINITE',
  /** A budget is outside its allowed range or larger than the cache it applies to. */
  Budget: 'KVF_BUDGET',
  /** A policy was handed a cache with no tokens. */
  EmptyCache: 'KVF_EMPTY_CACHE',
  /** A tensor has another dtype than the one required. */
  DType: 'KVF_DTYPE',
  /** A backend cannot run here (engine not installed, provider missing, native library mismatch). */
  BackendUnavailable: 'KVF_BACKEND_UNAVAILABLE',
  /** A model or checkpoint could not be loaded. */
  Model: 'KVF_MODEL',
  /** A policy needs an observation (attention, queries) that the runtime did not pass. */
  MissingObservation: 'KVF_MISSING_OBSERVATION',
  /** A file or folder the user named does not exist. */
  NotFound: 'KVF_NOT_FOUND',
  /** A tensor holds values too large in magnitude for float32 sums and merges to stay finite. */
  ValueRange: 'KVF_VALUE_RANGE',
  /** A plugin's own code (a getter, `create()`) threw an error that is not a kvfold error. */
  PluginFailure: 'KVF_PLUGIN_FAILURE',
  /** Another process holds the run folder's lock. */
  RunLocked: 'KVF_RUN_LOCKED',
  /** No kernel is defined under the requested name. */
  UnknownKernel: 'KVF_UNKNOWN_KERNEL',
} as const;

/** One of the {@link ErrorCode} values. */
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Base class of every error kvfold throws on purpose. `code` is stable; `details` is machine-readable. */
export class KVFoldError extends Error {
  /** Stable code, one of {@link ErrorCode}. */
  readonly code: ErrorCodeValue;
  /** Structured context (field, allowed values, shapes...) for programs that handle the error. */
  readonly details: Readonly<Record<string, unknown>>;

  /**
   * Create an error with a stable code and structured details.
   *
   * @param code - Stable code.
   * @param details - Machine-readable context.
   * @param options - `cause`: the underlying error, if any.
   */
  constructor(code: ErrorCodeValue, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.details = details;
  }
}

/** One problem found in a configuration document. */
export interface ConfigIssue {
  /** JSON pointer of the offending value, e.g. `/policy/options/eps`. `''` is the document root. */
  readonly path: string;
  /** The schema rule that failed (`enum`, `maximum`, `type`, `required`, ...). */
  readonly rule: string;
  /** Human-readable explanation including the allowed values where the rule has them. */
  readonly message: string;
  /** Allowed values or bounds, when the rule defines them. */
  readonly allowed?: unknown;
}

/** The configuration is invalid; `issues` lists every problem with its JSON path, rule and allowed values. */
export class ConfigError extends KVFoldError {
  /** Every problem found, in document order. */
  readonly issues: readonly ConfigIssue[];
  /**
   * List every issue in the message, one line per JSON path.
   *
   * @param issues - Every problem found.
   * @param context - What was validated, e.g. `options of policy "h2o"`.
   */
  constructor(issues: readonly ConfigIssue[], context = 'config') {
    const lines = issues.map((i) => `  ${i.path || '/'}: ${i.message} (${i.rule})`);
    super(ErrorCode.Config, `${context} is invalid:\n${lines.join('\n')}`, { issues });
    this.issues = issues;
  }
}

/** No policy is registered under that name. */
export class UnknownPolicyError extends KVFoldError {
  /**
   * Name the missing policy and the registered ones.
   *
   * @param name - The requested name.
   * @param available - The registered names.
   */
  constructor(name: string, available: readonly string[]) {
    super(ErrorCode.UnknownPolicy, `unknown policy "${name}"; registered policies: ${quoteList(available)}`, { name, available });
  }
}

/** No backend is registered under that name. */
export class UnknownBackendError extends KVFoldError {
  /**
   * Name the missing backend and the registered ones.
   *
   * @param name - The requested name.
   * @param available - The registered names.
   */
  constructor(name: string, available: readonly string[]) {
    super(ErrorCode.UnknownBackend, `unknown backend "${name}"; registered backends: ${quoteList(available)}`, { name, available });
  }
}

/** A plugin package named in the config could not be resolved or imported. */
export class UnknownPluginError extends KVFoldError {
  /**
   * Name the plugin package and why it could not be loaded.
   *
   * @param specifier - The package name or path as given.
   * @param reason - Why it failed.
   * @param cause - The import error.
   */
  constructor(specifier: string, reason: string, cause?: unknown) {
    super(ErrorCode.UnknownPlugin, `plugin "${specifier}" could not be loaded: ${reason}`, { plugin: specifier }, { cause });
  }
}

/** A plugin's default export is not a kvfold plugin. */
export class InvalidPluginError extends KVFoldError {
  /**
   * Name the plugin package and what its default export lacks.
   *
   * @param specifier - The package name or path as given.
   * @param reason - What the export lacks.
   * @param cause - The error that revealed it (a throwing getter, an invalid schema).
   */
  constructor(specifier: string, reason: string, cause?: unknown) {
    super(ErrorCode.InvalidPlugin, `plugin "${specifier}" is not a kvfold plugin: ${reason}. Export default definePlugin({...}) from @kvfold/core.`, { plugin: specifier }, { cause });
  }
}

/** A plugin or policy targets another specification version or kvfold major version. */
export class IncompatiblePluginError extends KVFoldError {
  /**
   * Name the plugin package, what it was built for and what this kvfold supports.
   *
   * @param specifier - The package.
   * @param found - What it was built for.
   * @param expected - What this kvfold supports.
   * @param changes - What changed between the two, so the author knows what to update.
   */
  constructor(specifier: string, found: string, expected: string, changes?: string) {
    super(ErrorCode.IncompatiblePlugin, `plugin "${specifier}" was built for ${found}, but this kvfold supports ${expected}${changes ? `; what changed: ${changes}` : ''}`, {
      plugin: specifier,
      found,
      expected,
      ...(changes ? { changes } : {}),
    });
  }
}

/** Two registrations use the same name. */
export class NameClashError extends KVFoldError {
  /**
   * Name the contested name and both owners.
   *
   * @param kind - What clashed.
   * @param name - The contested name.
   * @param existingOwner - Who registered it first.
   * @param newOwner - Who tried again.
   */
  constructor(kind: 'policy' | 'backend' | 'plugin' | 'kernel', name: string, existingOwner: string, newOwner: string) {
    super(ErrorCode.NameClash, `${kind} "${name}" from ${newOwner} clashes with the one already registered by ${existingOwner}`, { kind, name, existingOwner, newOwner });
  }
}

/** Shapes disagree. */
export class ShapeError extends KVFoldError {
  /**
   * Describe the disagreeing shapes.
   *
   * @param message - What disagrees.
   * @param details - The shapes involved.
   */
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(ErrorCode.Shape, message, details);
  }
}

/** Keys or values contain NaN or an infinity. */
export class NonFiniteError extends KVFoldError {
  /**
   * Name the tensor that holds NaN or Infinity.
   *
   * @param field - The tensor holding NaN or Infinity.
   * @param details - Where it was found.
   */
  constructor(field: string, details: Record<string, unknown> = {}) {
    super(ErrorCode.NonFinite, `${field} contains NaN or Infinity; kvfold refuses to compress non-finite caches`, { field, ...details });
  }
}

/** A budget is out of range, or larger than the cache. */
export class BudgetError extends KVFoldError {
  /**
   * Describe the out-of-range budget.
   *
   * @param message - What is out of range.
   * @param details - The field, value and allowed range.
   */
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(ErrorCode.Budget, message, details);
  }
}

/** A policy was handed an empty cache. */
export class EmptyCacheError extends KVFoldError {
  /**
   * Name the call that received an empty cache.
   *
   * @param where - The call that received the empty cache.
   */
  constructor(where: string) {
    super(ErrorCode.EmptyCache, `${where}: the cache holds no tokens; prefill needs at least one`, { where });
  }
}

/** A tensor has the wrong dtype. */
export class DTypeError extends KVFoldError {
  /**
   * Name the tensor, its dtype and the allowed ones.
   *
   * @param field - The tensor.
   * @param found - Its dtype.
   * @param expected - The allowed dtypes.
   */
  constructor(field: string, found: string, expected: readonly string[]) {
    super(ErrorCode.DType, `${field} has dtype ${found}; expected ${quoteList(expected)}`, { field, found, expected });
  }
}

/** A backend (or one of its engines / execution providers) cannot run on this machine. */
export class BackendUnavailableError extends KVFoldError {
  /**
   * Say why the backend cannot run here.
   *
   * @param message - Why it cannot run.
   * @param details - Backend, engine or provider.
   * @param cause - The underlying error.
   */
  constructor(message: string, details: Record<string, unknown> = {}, cause?: unknown) {
    super(ErrorCode.BackendUnavailable, message, details, { cause });
  }
}

/** A model checkpoint could not be loaded. */
export class ModelError extends KVFoldError {
  /**
   * Say what is wrong with the model, naming the file or tensor.
   *
   * @param message - What is wrong with the model.
   * @param details - The file or tensor.
   * @param cause - The underlying error.
   */
  constructor(message: string, details: Record<string, unknown> = {}, cause?: unknown) {
    super(ErrorCode.Model, message, details, { cause });
  }
}

/** `["a","b"]` → `"a", "b"`; used in every message that lists allowed values. */
export function quoteList(values: readonly unknown[]): string {
  return values.length === 0 ? '(none)' : values.map((v) => JSON.stringify(v)).join(', ');
}

/** A policy needs an observation the runtime did not provide. */
export class MissingObservationError extends KVFoldError {
  /**
   * Name the policy and the observation it needs.
   *
   * @param policy - The policy's name.
   * @param need - The missing observation.
   */
  constructor(policy: string, need: string) {
    super(ErrorCode.MissingObservation, `policy "${policy}" needs observed.${need}, but the runtime passed none; compute it with kernels.observe()`, { policy, need });
  }
}

/** A file or folder the user named does not exist (a missing file is "not found", never "invalid"). */
export class NotFoundError extends KVFoldError {
  /**
   * Name the missing path and what it was supposed to be.
   *
   * @param what - What the path should hold, e.g. `config file`.
   * @param path - The absolute path that does not exist.
   * @param hint - What to do instead, appended to the message.
   */
  constructor(what: string, path: string, hint = '') {
    super(ErrorCode.NotFound, `${what} ${path} not found${hint ? `; ${hint}` : ''}`, { what, path });
  }
}

/** A tensor holds values whose magnitude kvfold refuses (float32 sums of them could overflow). */
export class ValueRangeError extends KVFoldError {
  /**
   * Name the tensor and the limit.
   *
   * @param field - The tensor holding a value at or above the limit.
   * @param limit - The exclusive magnitude limit.
   * @param details - Where it was found.
   */
  constructor(field: string, limit: number, details: Record<string, unknown> = {}) {
    super(ErrorCode.ValueRange, `${field} holds a value of magnitude >= ${limit} (2^${Math.log2(limit)}); kvfold computes in float32 and refuses values this large, whose merged sums could overflow`, {
      field,
      limit,
      ...details,
    });
  }
}

/** A plugin's own code threw something other than a kvfold error. */
export class PluginFailureError extends KVFoldError {
  /**
   * Name the plugin, the part that threw and the error.
   *
   * @param plugin - The plugin (or registry owner) whose code threw.
   * @param where - What threw, e.g. `policy "tova" create()`.
   * @param cause - The thrown value.
   */
  constructor(plugin: string, where: string, cause: unknown) {
    super(ErrorCode.PluginFailure, `plugin "${plugin}": ${where} threw: ${cause instanceof Error ? cause.message : String(cause)}`, { plugin, where }, { cause });
  }
}

/** Another process holds the lock of a run folder. */
export class RunLockedError extends KVFoldError {
  /**
   * Name the folder and the lock holder.
   *
   * @param dir - The run folder.
   * @param holder - What the lock file records: pid, host, start time.
   */
  constructor(dir: string, holder: { readonly pid: number; readonly host: string; readonly startedAt?: string }) {
    super(
      ErrorCode.RunLocked,
      `run folder ${dir} is in use by process ${holder.pid} on ${holder.host}${holder.startedAt ? ` (since ${holder.startedAt})` : ''}; wait for it to finish, or if that process no longer exists, remove ${dir}/.lock`,
      { dir, ...holder },
    );
  }
}

/** No kernel is defined under that name (neither built in nor registered by a plugin). */
export class UnknownKernelError extends KVFoldError {
  /**
   * Name the missing kernel and the defined ones.
   *
   * @param name - The requested name.
   * @param available - The defined names.
   */
  constructor(name: string, available: readonly string[]) {
    super(ErrorCode.UnknownKernel, `unknown kernel "${name}"; defined kernels: ${quoteList(available)}`, { name, available });
  }
}
