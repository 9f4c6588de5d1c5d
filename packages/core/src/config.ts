import { Ajv, type ErrorObject } from 'ajv';
import { ConfigError, type ConfigIssue } from './errors.js';
import type { Budget } from './budget.js';
import type { GroupReduction } from './kernels.js';
import type { JsonSchema } from './policy.js';
import type { BackendDefinition } from './backend.js';
import type { PolicyDefinition } from './policy.js';
import type { RegistryEntry } from './registry.js';

/** What {@link composeSchema} reads of a registry: its names and entries (a registry, or a candidate list). */
export interface RegistryView<D> {
  /** Registered names, sorted. */
  names(): string[];
  /** Entries, sorted by name. */
  list(): RegistryEntry<D>[];
}

/** The configuration document kvfold reads (file or object). */
export interface KVFoldConfig {
  /** Editor hint; ignored. */
  readonly $schema?: string;
  /** Backend that runs the kernels; default `{ name: "reference" }`. */
  readonly backend?: {
    /** Registered backend name. */
    readonly name: string;
    /** Options checked against that backend's schema. */
    readonly options?: Record<string, unknown>;
  };
  /** npm packages to load as plugins, resolved from the user's project. */
  readonly plugins?: readonly string[];
  /** The policy to run, its budget and options. */
  readonly policy: {
    /** Registered policy name. */
    readonly name: string;
    /** Slots kept per layer after prefill. */
    readonly budget: Budget;
    /** Options checked against that policy's schema. */
    readonly options?: Record<string, unknown>;
  };
  /** Seed of every random choice (CaM's gate, random eviction). Default 0. */
  readonly seed?: number;
  /** How the query heads of a GQA group are reduced before a policy sees attention. Default `mean`. */
  readonly groupReduction?: GroupReduction;
}

/** JSON Schema of a budget: a ratio shorthand, `{ratio}` or `{tokens}`. */
export const budgetSchema: JsonSchema = {
  description: 'Slots kept per layer after prefill: a ratio of the prompt in (0, 1] (number or {"ratio": r}) or an absolute count ({"tokens": n}).',
  oneOf: [
    { type: 'number', exclusiveMinimum: 0, maximum: 1 },
    { type: 'object', properties: { ratio: { type: 'number', exclusiveMinimum: 0, maximum: 1 } }, required: ['ratio'], additionalProperties: false },
    { type: 'object', properties: { tokens: { type: 'integer', minimum: 1 } }, required: ['tokens'], additionalProperties: false },
  ],
};

/** Extra top-level sections (e.g. the benchmark's) merged into the composed schema. */
export type SchemaExtensions = Readonly<Record<string, JsonSchema>>;

/**
 * Compose the configuration schema from every registered policy's and backend's option schema:
 * names are enums of what is registered, and each name's `options` is checked against its own schema.
 */
export function composeSchema(policies: RegistryView<PolicyDefinition<never>>, backends: RegistryView<BackendDefinition<never>>, extensions: SchemaExtensions = {}): JsonSchema {
  const policyNames = policies.names();
  const backendNames = backends.names();
  const policyRules = policies.list().map(({ definition }) => ({
    if: { properties: { name: { const: definition.name } }, required: ['name'] },
    then: { properties: { options: definition.schema } },
  }));
  const backendRules = backends.list().map(({ definition }) => ({
    if: { properties: { name: { const: definition.name } }, required: ['name'] },
    then: { properties: { options: definition.schema } },
  }));
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'https://kvfold.dev/kvfold.schema.json',
    title: 'kvfold configuration',
    type: 'object',
    additionalProperties: false,
    required: ['policy'],
    properties: {
      $schema: { type: 'string' },
      backend: {
        type: 'object',
        description: 'Backend that runs the kernels; "reference" when absent.',
        additionalProperties: false,
        required: ['name'],
        properties: { name: nameSchema(backendNames, 'backend'), options: { type: 'object' } },
        ...(backendRules.length > 0 ? { allOf: backendRules } : {}),
      },
      plugins: { type: 'array', items: { type: 'string', minLength: 1 }, uniqueItems: true, description: 'npm packages loaded as plugins.' },
      policy: {
        type: 'object',
        description: 'The policy to run.',
        additionalProperties: false,
        required: ['name', 'budget'],
        properties: { name: nameSchema(policyNames, 'policy'), budget: budgetSchema, options: { type: 'object' } },
        ...(policyRules.length > 0 ? { allOf: policyRules } : {}),
      },
      seed: { type: 'integer', minimum: 0, maximum: 4294967295, default: 0, description: 'Seed of every random choice.' },
      groupReduction: { enum: ['mean', 'max', 'sum'], default: 'mean', description: 'Reduction of GQA query heads to their kv head.' },
      ...extensions,
    },
  };
}

/** An enum of registered names; JSON Schema forbids an empty enum, so with none registered any string passes here and the registry lookup reports the unknown name. */
function nameSchema(names: readonly string[], kind: string): JsonSchema {
  return names.length > 0 ? { enum: names, description: `Registered ${kind} name.` } : { type: 'string', description: `Registered ${kind} name (none registered yet).` };
}

/** ajv compiled validator cache keyed by schema object, so validation is compiled once per schema. */
const compiled = new WeakMap<object, ReturnType<Ajv['compile']>>();

function validatorFor(schema: JsonSchema, context: string): ReturnType<Ajv['compile']> {
  let v = compiled.get(schema);
  if (!v) {
    const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false, verbose: true });
    try {
      v = ajv.compile(schema);
    } catch (e) {
      throw new ConfigError([{ path: '', rule: 'schema', message: `the JSON Schema of ${context} does not compile: ${(e as Error).message}` }], `schema of ${context}`);
    }
    compiled.set(schema, v);
  }
  return v;
}

/**
 * Compile a JSON Schema now (cached), so a broken schema is found when it is registered rather than on
 * the first validation.
 * @throws ConfigError (rule `schema`) with ajv's reason when it does not compile.
 */
export function compileSchema(schema: JsonSchema, context = 'config'): void {
  validatorFor(schema, context);
}

/**
 * Validate `value` against `schema`, filling defaults into a deep copy, and return the copy.
 * @throws ConfigError listing every problem with its JSON path, rule and allowed values (rule `schema`
 *   when the schema itself does not compile; `clone` when the value cannot be copied).
 */
export function validateAgainst<T>(schema: JsonSchema, value: unknown, context = 'config'): T {
  let copy: unknown;
  try {
    copy = value === undefined ? {} : structuredClone(value);
  } catch (e) {
    throw new ConfigError([{ path: '', rule: 'clone', message: `must be plain JSON data (${(e as Error).message})` }], context);
  }
  const validate = validatorFor(schema, context);
  if (!validate(copy)) throw new ConfigError(toIssues(validate.errors ?? []), context);
  return copy as T;
}

/** Options objects validated by {@link validateOptions}, with the schema they passed. */
const validatedFor = new WeakMap<object, JsonSchema>();

/**
 * Validate options against `schema` once: the result is remembered, so passing it again (as `KVFold.policy`
 * does when it hands validated options to a policy's constructor) returns it without a second validation.
 * Policy constructors call this, so direct construction still validates.
 * @throws ConfigError listing every problem with its JSON path, rule and allowed values.
 */
export function validateOptions<T>(schema: JsonSchema, value: unknown, context = 'options'): T {
  if (typeof value === 'object' && value !== null && validatedFor.get(value) === schema) return value as T;
  const valid = validateAgainst<T>(schema, value, context);
  if (typeof valid === 'object' && valid !== null) validatedFor.set(valid, schema);
  return valid;
}

/** Turn ajv errors into issues people can act on; drops the noise of `if/then` and `oneOf` branches. */
export function toIssues(errors: readonly ErrorObject[]): ConfigIssue[] {
  const oneOfPaths = new Set(errors.filter((e) => e.keyword === 'oneOf').map((e) => e.instancePath));
  const issues: ConfigIssue[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    if (e.keyword === 'if') continue;
    if (e.keyword !== 'oneOf' && [...oneOfPaths].some((p) => e.instancePath.startsWith(p) && e.schemaPath.includes('/oneOf/'))) continue;
    const issue = describe(e);
    const key = `${issue.path}|${issue.rule}|${issue.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    issues.push(issue);
  }
  return issues;
}

function describe(e: ErrorObject): ConfigIssue {
  const p = e.params as Record<string, unknown>;
  const path = e.instancePath;
  switch (e.keyword) {
    case 'enum':
      return { path, rule: 'enum', message: `must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`, allowed: p.allowedValues };
    case 'const':
      return { path, rule: 'const', message: `must be ${JSON.stringify(p.allowedValue)}`, allowed: [p.allowedValue] };
    case 'additionalProperties': {
      const allowed = Object.keys(((e.parentSchema as { properties?: object } | undefined)?.properties) ?? {});
      return { path: `${path}/${String(p.additionalProperty)}`, rule: 'additionalProperties', message: `unknown property "${String(p.additionalProperty)}"; allowed: ${allowed.join(', ') || '(none)'}`, allowed };
    }
    case 'required':
      return { path: `${path}/${String(p.missingProperty)}`, rule: 'required', message: `is required` };
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return { path, rule: e.keyword, message: `${e.message ?? 'is out of range'}`, allowed: { [e.keyword]: p.limit } };
    case 'type':
      return { path, rule: 'type', message: `must be of type ${String(p.type)}`, allowed: p.type };
    case 'oneOf': {
      const desc = (e.parentSchema as { description?: string } | undefined)?.description;
      return { path, rule: 'oneOf', message: desc ? `must be one of the allowed forms: ${desc}` : 'must match exactly one allowed form' };
    }
    default:
      return { path, rule: e.keyword, message: e.message ?? 'is invalid' };
  }
}
