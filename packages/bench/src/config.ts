import { createHash } from 'node:crypto';
import {
  ConfigError,
  composeSchema,
  validateAgainst,
  type BackendRegistry,
  type ConfigIssue,
  type GroupReduction,
  type JsonSchema,
  type KVFold,
  type PolicyRegistry,
} from '@kvfold/core';

/** The benchmark suites, in the order a run executes them. */
export const SUITE_NAMES = ['needle', 'fidelity', 'perplexity', 'speed'] as const;

/** Name of one benchmark suite. */
export type SuiteName = (typeof SUITE_NAMES)[number];

/** A policy of the sweep: its registry name, a label for tables (default the name) and its options. */
export interface PolicySpec {
  /** Registered policy name. */
  readonly name: string;
  /** Label used in tables, plots and item keys; must be unique in the sweep. Default the name. */
  readonly label?: string;
  /** Options checked against the policy's schema. */
  readonly options?: Record<string, unknown>;
  /**
   * Proportional attention for this row: the model adds log(count) to the logits of slots that stand for
   * several tokens (merged slots), and the fidelity metric does the same. Default the section's
   * `proportional`. Slots with count 1 are unaffected, so it changes only rows whose policy merges.
   */
  readonly proportional?: boolean;
}

/** A backend and its options. */
export interface BackendSpec {
  /** Registered backend name. */
  readonly name: string;
  /** Options checked against the backend's schema. */
  readonly options?: Record<string, unknown>;
}

/** A backend by name (shorthand) or with options. */
export type BackendRef = string | BackendSpec;

/** The `{name, options}` form of a backend reference. */
export function backendSpec(ref: BackendRef): BackendSpec {
  return typeof ref === 'string' ? { name: ref } : ref;
}

/** A short label of a backend reference: its name, plus its options when given (`onnx(threads=1)`). */
export function backendLabel(ref: BackendRef): string {
  const spec = backendSpec(ref);
  const opts = Object.entries(spec.options ?? {});
  return opts.length === 0 ? spec.name : `${spec.name}(${opts.map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(',')})`;
}

/** Where the passkey question goes relative to the compression. */
export type QuestionPlacement = 'after-compression' | 'in-prompt';

/** Filler (and, for `prose-words`, key) of the needle suite's passkey-style prompts; see {@link NeedleConfig.fillers}. */
export type NeedleFiller = 'grammar' | 'prose' | 'prose-words';

/** The needle task a filler's prompts make: `passkey`, `passkey-prose` or `word-needle`. */
export function needleTaskOf(filler: NeedleFiller): 'passkey' | 'passkey-prose' | 'word-needle' {
  return filler === 'prose' ? 'passkey-prose' : filler === 'prose-words' ? 'word-needle' : 'passkey';
}

/** Multi-key associative recall settings of the needle suite. */
export interface RecallConfig {
  /** Prompt lengths in tokens (bytes for the embedded model). */
  readonly lengths: number[];
  /** Numbers of key/value pairs per prompt. */
  readonly pairs: number[];
  /** Samples per (length, pairs) cell. */
  readonly samples: number;
}

/** Needle suite: passkey retrieval over length x depth, plus associative recall. */
export interface NeedleConfig {
  /** Prompt lengths in tokens. */
  readonly lengths: number[];
  /** Needle depths in [0, 1]. */
  readonly depths: number[];
  /** Samples per (length, depth) cell. */
  readonly samples: number;
  /** Digits of the pass key. */
  readonly digits: number;
  /**
   * `after-compression` (default): the context is compressed first, then the question is fed as a decode
   * step, so no policy sees the question before it compresses (query-agnostic). `in-prompt`: the whole
   * prompt including the question is compressed at prefill (query-aware).
   */
  readonly question: QuestionPlacement;
  /** Associative recall; `null` skips it. */
  readonly recall: RecallConfig | null;
  /**
   * Filler of the passkey prompts: `grammar` (the tiny grammar the model was trained on; task `passkey`),
   * `prose` (held-out public-domain prose; task `passkey-prose`) and/or `prose-words` (the same prose with a
   * key of three words drawn from the filler's own frequent words, "The pass key is gentle harbor
   * lantern."; task `word-needle`: the key's tokens do not stand out from the filler). Default `["grammar"]`.
   */
  readonly fillers: NeedleFiller[];
  /** Pairs of policy labels whose rows are compared item by item (exact McNemar) at every budget; `null` = none. */
  readonly compare: LabelPair[] | null;
}

/** Two policy labels of the sweep whose rows a report compares on the same items. */
export interface LabelPair {
  /** Label of row A. */
  readonly a: string;
  /** Label of row B. */
  readonly b: string;
}

/** Fidelity suite: per-layer relative error of attention outputs, compressed vs full cache. */
export interface FidelityConfig {
  /** Context lengths in tokens (the part that is compressed). */
  readonly contexts: number[];
  /** Probe tokens after the context whose real queries attend over it. */
  readonly probes: number;
  /** Samples per context length. */
  readonly samples: number;
  /** Backend the policies compress on. */
  readonly backend: BackendRef;
}

/** Perplexity suite: held-out text scored after its context was compressed. */
export interface PerplexityConfig {
  /** Context tokens compressed at prefill. */
  readonly context: number;
  /** Tokens scored after the context. */
  readonly continuation: number;
  /** Number of texts. */
  readonly samples: number;
  /** Continuation tokens fed per forward pass (the policy's `step` runs after each); 1 = token by token. */
  readonly chunk: number;
}

/** Compression throughput per backend against the memory-copy floor. */
export interface ThroughputConfig {
  /** Backends to compare. */
  readonly backends: BackendRef[];
  /** Policy labels of the sweep to time (default: every non-full policy). */
  readonly policies: string[] | null;
  /** kv heads of the synthetic cache. */
  readonly heads: number;
  /** Tokens of the synthetic cache. */
  readonly length: number;
  /** Several cache lengths, each timed (replaces `length` when given). */
  readonly lengths: number[] | null;
  /** Head dimension. */
  readonly headDim: number;
  /** Budget ratio the cache is compressed to. */
  readonly budget: number;
  /** Timed repetitions (median reported). */
  readonly reps: number;
}

/**
 * One decode step of an evicting policy on a full cache (the cache at its budget plus the token just
 * appended, so the step evicts one slot per head), against that token's attention on the same backend.
 */
export interface StepConfig {
  /** Backends compared. */
  readonly backends: BackendRef[];
  /** Policy labels of the sweep to time (default: h2o and cam when present). */
  readonly policies: string[] | null;
  /** kv heads of the synthetic cache. */
  readonly heads: number;
  /** Slots of the cache before the new token (its budget). */
  readonly length: number;
  /** Head dimension. */
  readonly headDim: number;
  /** Query heads per kv head of the attention the step is compared with. */
  readonly group: number;
  /** Timed repetitions (median reported). */
  readonly reps: number;
}

/** Decode speed and cache bytes of the model with and without each policy. */
export interface DecodeConfig {
  /** Prompt tokens. */
  readonly prompt: number;
  /** Tokens generated (greedy, EOS ignored). */
  readonly tokens: number;
  /** Rounds over every variant, interleaved; the median is reported. */
  readonly rounds: number;
}

/** Compression time against context length. */
export interface ScalingConfig {
  /** Backend timed. */
  readonly backend: BackendRef;
  /** Policy labels of the sweep to time (default: h2o, cam, kvmerger when present). */
  readonly policies: string[] | null;
  /** Cache lengths in tokens. */
  readonly lengths: number[];
  /** kv heads. */
  readonly heads: number;
  /** Head dimension. */
  readonly headDim: number;
  /** Budget ratio. */
  readonly budget: number;
  /** Timed repetitions (median reported). */
  readonly reps: number;
}

/** Speed and memory suite; each part is skipped when `null`. */
export interface SpeedConfig {
  /** Compression throughput per backend. */
  readonly throughput: ThroughputConfig | null;
  /** Decode tokens/s and cache bytes per policy. */
  readonly decode: DecodeConfig | null;
  /** Compression time from short to long caches. */
  readonly scaling: ScalingConfig | null;
  /** One decode step's eviction against that step's attention. */
  readonly step: StepConfig | null;
}

/** The suites of a run; a suite runs when its section is present. */
export interface SuitesConfig {
  /** Passkey heatmap and associative recall. */
  readonly needle?: NeedleConfig;
  /** Attention-output fidelity per layer. */
  readonly fidelity?: FidelityConfig;
  /** Held-out perplexity. */
  readonly perplexity?: PerplexityConfig;
  /** Speed and memory. */
  readonly speed?: SpeedConfig;
}

/** tfjs engine for the model. */
export type ModelEngine = 'auto' | 'wasm' | 'cpu' | 'tensorflow';

/**
 * What executes the model: `tfjs` is `@kvfold/runtime`'s decoder; `transformers.js` is transformers.js
 * (onnxruntime-node) running an ONNX export of the same checkpoint made with `@kvfold/onnx-export`, the
 * cache compressed through `@kvfold/transformers` with policies on the reference backend.
 */
export type BenchRuntime = 'tfjs' | 'transformers.js';

/** Every {@link BenchRuntime}. */
export const BENCH_RUNTIMES: readonly BenchRuntime[] = ['tfjs', 'transformers.js'];

/** Runtimes the needle and speed (decode) suites can run on; the other suites run on `tfjs` only. */
export const RUNTIME_SUITES: readonly SuiteName[] = ['needle', 'speed'];

/** The `bench` section of a kvfold configuration document. */
export interface BenchSection {
  /** Run name, part of the run folder's id. */
  readonly name: string;
  /** `embedded` (the project's own model) or the path of a Hugging Face model folder. */
  readonly model: string;
  /** tfjs engine the model runs on. */
  readonly engine: ModelEngine;
  /** Policies of the sweep (names or specs). */
  readonly policies: (string | PolicySpec)[];
  /** Budget ratios in (0, 1]. The `full` policy runs once, at budget 1. */
  readonly budgets: number[];
  /** Add the `full` policy as the reference row when the sweep lacks it. */
  readonly baseline: boolean;
  /** Proportional attention (log(count) added to merged slots' logits) in the model and the fidelity metric. */
  readonly proportional: boolean;
  /**
   * Runtimes that execute the model (default `["tfjs"]`). With `transformers.js` listed, every policy x
   * budget also runs on it in the needle and decode-speed suites, as rows next to the tfjs ones; that
   * runtime needs the optional peers `@kvfold/transformers` and `@huggingface/transformers` (a run without
   * them stops before it starts with a `BackendUnavailableError` saying how to install them).
   */
  readonly runtimes?: BenchRuntime[];
  /** The suites to run. */
  readonly suites: SuitesConfig;
  /** Folder under which run folders are created. */
  readonly output: string;
}

/** A whole configuration document as the benchmark reads it (core's top-level fields plus `bench`). */
export interface BenchDocument {
  /** Editor hint; ignored. */
  readonly $schema?: string;
  /** Plugin packages loaded before validation. */
  readonly plugins?: string[];
  /** Seed of every random choice (samples, random policies). */
  readonly seed: number;
  /** GQA group reduction of observed attention. */
  readonly groupReduction: GroupReduction;
  /** The benchmark section. */
  readonly bench: BenchSection;
}

/** One policy at one budget: a row of every table. */
export interface Variant {
  /** Unique label of the policy spec. */
  readonly label: string;
  /** Registered policy name. */
  readonly policy: string;
  /** Validated options. */
  readonly options: Record<string, unknown>;
  /** Budget ratio (1 for `full`). */
  readonly budget: number;
  /** `label@budget` (`label@budget@transformers.js` on that runtime): the variant's part of item keys. */
  readonly id: string;
  /** What executes the model for this variant. */
  readonly runtime: BenchRuntime;
  /** Proportional attention (log(count) on merged slots) for this row: its spec's, else the section's. */
  readonly proportional: boolean;
}

/** A validated configuration with its variants expanded. */
export interface BenchConfig {
  /** The validated document with defaults filled in. */
  readonly document: BenchDocument;
  /** Shorthand for `document.bench`. */
  readonly bench: BenchSection;
  /** Policy x budget variants, in sweep order. */
  readonly variants: Variant[];
  /** The suites that run, in execution order. */
  readonly suites: SuiteName[];
  /** SHA-256 of the canonical validated document; a run folder only resumes the same hash. */
  readonly hash: string;
}

const int = (minimum: number, maximum: number, def: number, description: string): JsonSchema => ({ type: 'integer', minimum, maximum, default: def, description });
const ratio: JsonSchema = { type: 'number', exclusiveMinimum: 0, maximum: 1, description: 'A budget ratio in (0, 1].' };
const lengths = (min: number, max: number, def: number[], description: string): JsonSchema => ({
  type: 'array',
  items: { type: 'integer', minimum: min, maximum: max },
  minItems: 1,
  uniqueItems: true,
  default: def,
  description,
});

/** Schema of a `{name, options}` reference to a registered policy or backend, with per-name option rules. */
function specSchema(names: readonly string[], rules: JsonSchema[], kind: 'policy' | 'backend', extra: Record<string, JsonSchema> = {}): JsonSchema {
  const name: JsonSchema = names.length > 0 ? { enum: [...names], description: `Registered ${kind} name.` } : { type: 'string' };
  return {
    // A bare name is shorthand for {name}; if/then keeps each branch's errors (oneOf would hide them).
    if: { type: 'string' },
    then: name,
    else: {
      type: 'object',
      additionalProperties: false,
      required: ['name'],
      properties: { name, ...extra, options: { type: 'object', description: `Options checked against the ${kind}'s schema.` } },
      ...(rules.length > 0 ? { allOf: rules } : {}),
    },
  };
}

function optionRules(entries: readonly { readonly definition: { readonly name: string; readonly schema: JsonSchema } }[], fillDefaults = true): JsonSchema[] {
  return entries.map(({ definition }) => ({
    if: { properties: { name: { const: definition.name } }, required: ['name'] },
    then: { properties: { options: fillDefaults ? definition.schema : withoutDefaults(definition.schema) } },
  }));
}

// Backend options are checked here but left as written: the backend fills its own defaults when it is
// created, and labels such as `onnx(threads=1)` show only what the config chose, not every default.
function withoutDefaults(schema: unknown): JsonSchema {
  if (Array.isArray(schema)) return schema.map(withoutDefaults) as unknown as JsonSchema;
  if (typeof schema !== 'object' || schema === null) return schema as JsonSchema;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === 'default') continue;
    // Under `properties` the keys are option names (one may be called "default"), not keywords.
    out[k] = k === 'properties' && typeof v === 'object' && v !== null ? Object.fromEntries(Object.entries(v).map(([n, p]) => [n, withoutDefaults(p)])) : withoutDefaults(v);
  }
  return out as JsonSchema;
}

/**
 * JSON Schema of the `bench` section, composed from what is registered: policy and backend names are
 * enums and each entry's `options` is checked against its own schema.
 */
export function benchSectionSchema(policies: PolicyRegistry, backends: BackendRegistry): JsonSchema {
  const policy = specSchema(policies.names(), optionRules(policies.list()), 'policy', {
    label: { type: 'string', minLength: 1, pattern: '^[A-Za-z0-9_.:+=-]+$', description: 'Unique label in tables and item keys.' },
    proportional: { type: 'boolean', description: "Proportional attention for this row (log(count) on merged slots' logits, in the model and the fidelity metric); default the section's proportional." },
  });
  const backend = specSchema(backends.names(), optionRules(backends.list(), false), 'backend');
  const labels: JsonSchema = { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1, uniqueItems: true };
  // type [object, null] rather than anyOf: ajv fills defaults inside properties but not inside anyOf branches.
  const nullable = (s: JsonSchema): JsonSchema => ({ ...s, type: ['object', 'null'] });
  const nullableList = (s: JsonSchema): JsonSchema => ({ ...s, type: ['array', 'null'], default: null });
  return {
    type: 'object',
    description: 'kvfold benchmark: suites run over every policy x budget of the sweep.',
    additionalProperties: false,
    properties: {
      name: { type: 'string', minLength: 1, pattern: '^[A-Za-z0-9_.-]+$', default: 'bench', description: 'Run name (part of the run folder id).' },
      model: { type: 'string', minLength: 1, default: 'embedded', description: '"embedded" (the project model) or a Hugging Face model folder (config.json + safetensors + tokenizer).' },
      engine: { enum: ['auto', 'wasm', 'cpu', 'tensorflow'], default: 'auto', description: 'tfjs engine of the model.' },
      policies: { type: 'array', items: policy, minItems: 1, default: ['full', 'window', 'h2o', 'cam', 'kvmerger'], description: 'Policies of the sweep: names or {name, label, options}.' },
      budgets: { type: 'array', items: ratio, minItems: 1, uniqueItems: true, default: [0.5, 0.35, 0.2], description: 'Budget ratios in (0, 1]; full runs once at 1.' },
      baseline: { type: 'boolean', default: true, description: 'Add the full policy as reference row when the sweep lacks it.' },
      proportional: { type: 'boolean', default: false, description: 'Proportional attention (log(count) on merged slots) in the model and the fidelity metric.' },
      runtimes: {
        type: 'array',
        items: { enum: [...BENCH_RUNTIMES] },
        minItems: 1,
        uniqueItems: true,
        description: 'What executes the model: "tfjs" (@kvfold/runtime, the default) and/or "transformers.js" (an ONNX export run by transformers.js; needle and decode-speed suites only; needs the optional peers @kvfold/transformers and @huggingface/transformers).',
      },
      output: { type: 'string', minLength: 1, default: 'bench/runs', description: 'Folder of run folders, relative to the working directory.' },
      suites: {
        type: 'object',
        additionalProperties: false,
        default: { needle: {}, fidelity: {}, perplexity: {}, speed: {} },
        description: 'Suites to run; a suite runs when its section is present (all four when the section is absent).',
        properties: {
          needle: {
            type: 'object',
            additionalProperties: false,
            properties: {
              lengths: lengths(64, 1 << 20, [256, 512, 1024, 2048], 'Prompt lengths (tokens).'),
              depths: { type: 'array', items: { type: 'number', minimum: 0, maximum: 1 }, minItems: 1, uniqueItems: true, default: [0, 0.25, 0.5, 0.75, 1], description: 'Needle depths in [0, 1].' },
              samples: int(1, 10_000, 2, 'Samples per (length, depth) cell.'),
              digits: int(1, 12, 5, 'Digits of the pass key.'),
              question: { enum: ['after-compression', 'in-prompt'], default: 'after-compression', description: 'after-compression: compress the context, then feed the question (query-agnostic); in-prompt: compress with the question (query-aware).' },
              recall: {
                ...nullable({
                  type: 'object',
                  additionalProperties: false,
                  properties: {
                    lengths: lengths(64, 1 << 20, [512, 1024], 'Prompt lengths (tokens).'),
                    pairs: lengths(1, 64, [4], 'Key/value pairs per prompt.'),
                    samples: int(1, 10_000, 8, 'Samples per (length, pairs) cell.'),
                  },
                }),
                default: {},
                description: 'Multi-key associative recall; null skips it.',
              },
              fillers: {
                type: 'array',
                items: { enum: ['grammar', 'prose', 'prose-words'] },
                minItems: 1,
                uniqueItems: true,
                default: ['grammar'],
                description:
                  'Passkey filler: grammar (task passkey, the tiny training grammar), prose (task passkey-prose, held-out public-domain prose) and/or prose-words (task word-needle: held-out prose, key of 3 words frequent in the filler, so its tokens do not stand out).',
              },
              compare: {
                type: ['array', 'null'],
                default: null,
                items: {
                  type: 'object',
                  additionalProperties: false,
                  required: ['a', 'b'],
                  properties: { a: { type: 'string', minLength: 1 }, b: { type: 'string', minLength: 1 } },
                },
                description: 'Pairs of policy labels compared item by item (exact McNemar, 95% paired bootstrap) at every budget both run.',
              },
            },
          },
          fidelity: {
            type: 'object',
            additionalProperties: false,
            properties: {
              contexts: lengths(16, 1 << 20, [512, 2048], 'Context lengths (tokens) that are compressed.'),
              probes: int(1, 4096, 64, 'Probe tokens after the context; their real queries attend over it.'),
              samples: int(1, 10_000, 2, 'Samples per context length.'),
              backend: { ...backend, default: 'reference', description: 'Backend the policies compress on.' },
            },
          },
          perplexity: {
            type: 'object',
            additionalProperties: false,
            properties: {
              context: int(8, 1 << 20, 1024, 'Context tokens compressed at prefill.'),
              continuation: int(2, 1 << 20, 512, 'Tokens scored after the context.'),
              samples: int(1, 10_000, 4, 'Held-out texts.'),
              chunk: int(1, 1 << 20, 64, 'Continuation tokens per forward pass (policy step after each); 1 = token by token.'),
            },
          },
          speed: {
            type: 'object',
            additionalProperties: false,
            properties: {
              throughput: {
                ...nullable({
                  type: 'object',
                  additionalProperties: false,
                  properties: {
                    backends: { type: 'array', items: backend, minItems: 1, default: ['reference', 'tfjs', 'onnx'], description: 'Backends compared.' },
                    policies: nullableList(labels),
                    heads: int(1, 256, 8, 'kv heads of the synthetic cache.'),
                    length: int(16, 1 << 22, 4096, 'Tokens of the synthetic cache.'),
                    lengths: { ...lengths(16, 1 << 22, [4096], 'Several cache lengths, each timed (replaces length).'), type: ['array', 'null'], default: null },
                    headDim: int(2, 1024, 64, 'Head dimension.'),
                    budget: { ...ratio, default: 0.5 },
                    reps: int(1, 1000, 5, 'Timed repetitions (median).'),
                  },
                }),
                default: {},
              },
              step: {
                ...nullable({
                  type: 'object',
                  additionalProperties: false,
                  properties: {
                    backends: { type: 'array', items: backend, minItems: 1, default: ['reference'], description: 'Backends compared.' },
                    policies: nullableList(labels),
                    heads: int(1, 256, 8, 'kv heads of the synthetic cache.'),
                    length: int(16, 1 << 22, 4096, 'Slots of the cache at its budget, before the new token.'),
                    headDim: int(2, 1024, 64, 'Head dimension.'),
                    group: int(1, 64, 1, 'Query heads per kv head of the attention the step is compared with.'),
                    reps: int(1, 1000, 7, 'Timed repetitions (median).'),
                  },
                }),
                default: null,
              },
              decode: {
                ...nullable({
                  type: 'object',
                  additionalProperties: false,
                  properties: {
                    prompt: int(2, 1 << 20, 1024, 'Prompt tokens.'),
                    tokens: int(1, 1 << 16, 64, 'Tokens generated (greedy, EOS ignored).'),
                    rounds: int(1, 100, 3, 'Rounds over every variant, interleaved; the median is reported.'),
                  },
                }),
                default: {},
              },
              scaling: {
                ...nullable({
                  type: 'object',
                  additionalProperties: false,
                  properties: {
                    backend: { ...backend, default: 'reference', description: 'Backend timed.' },
                    policies: nullableList(labels),
                    lengths: lengths(16, 1 << 22, [1024, 2048, 4096, 8192, 16384, 32768], 'Cache lengths (tokens).'),
                    heads: int(1, 256, 4, 'kv heads.'),
                    headDim: int(2, 1024, 64, 'Head dimension.'),
                    budget: { ...ratio, default: 0.5 },
                    reps: int(1, 1000, 3, 'Timed repetitions (median).'),
                  },
                }),
                default: {},
              },
            },
          },
        },
      },
    },
  };
}

/**
 * The composed kvfold configuration schema (core's sections, every registered policy's and backend's
 * options, and the `bench` section). A document needs `policy` (a runtime config), `bench` (a benchmark
 * config) or both. This is what `kvfold schema` writes as kvfold.schema.json.
 */
export function kvfoldSchema(kv: KVFold): JsonSchema {
  const { required: _required, ...composed } = composeSchema(kv.policies, kv.backends, { bench: benchSectionSchema(kv.policies, kv.backends) }) as Record<string, unknown>;
  return { ...composed, anyOf: [{ required: ['policy'] }, { required: ['bench'] }] };
}

/** {@link kvfoldSchema} with `bench` required: what `kvfold bench --config` accepts. */
export function benchDocumentSchema(kv: KVFold): JsonSchema {
  const { anyOf: _anyOf, ...schema } = kvfoldSchema(kv) as Record<string, unknown>;
  return { ...schema, required: ['bench'] };
}

function labelOf(spec: string | PolicySpec): string {
  return typeof spec === 'string' ? spec : (spec.label ?? spec.name);
}

/**
 * Validate a benchmark document against {@link benchDocumentSchema}, fill defaults, check what the
 * schema cannot (unique labels, labels named by the speed suite) and expand the variants.
 * Plugins named in the document must already be loaded into `kv`. `source` (a file name) is named in errors.
 * @throws ConfigError naming the source and each offending JSON path.
 */
export function resolveBenchConfig(kv: KVFold, document: unknown, source?: string): BenchConfig {
  const context = source === undefined ? 'benchmark config' : `benchmark config ${source}`;
  const doc = validateAgainst<BenchDocument>(benchDocumentSchema(kv), document, context);
  const bench = doc.bench;
  const issues: ConfigIssue[] = [];
  const specs: PolicySpec[] = bench.policies.map((p) => (typeof p === 'string' ? { name: p } : p));
  const seen = new Map<string, number>();
  specs.forEach((s, i) => {
    const label = labelOf(s);
    const first = seen.get(label);
    if (first !== undefined) {
      issues.push({ path: `/bench/policies/${i}`, rule: 'uniqueLabel', message: `label "${label}" is already used by /bench/policies/${first}; give each entry a distinct "label"` });
    } else seen.set(label, i);
  });
  if (bench.baseline && !specs.some((s) => s.name === 'full') && kv.policies.has('full')) specs.unshift({ name: 'full' });
  const speed = bench.suites.speed;
  const checkLabels = (list: string[] | null | undefined, path: string): void => {
    list?.forEach((l, i) => {
      if (!seen.has(l)) issues.push({ path: `${path}/${i}`, rule: 'enum', message: `must be a policy label of the sweep: ${[...seen.keys()].map((k) => JSON.stringify(k)).join(', ')}`, allowed: [...seen.keys()] });
    });
  };
  checkLabels(speed?.throughput?.policies, '/bench/suites/speed/throughput/policies');
  checkLabels(speed?.scaling?.policies, '/bench/suites/speed/scaling/policies');
  checkLabels(speed?.step?.policies, '/bench/suites/speed/step/policies');
  bench.suites.needle?.compare?.forEach((p, i) => {
    for (const side of ['a', 'b'] as const) {
      if (!seen.has(p[side]) && !(p[side] === 'full' && bench.baseline)) issues.push({ path: `/bench/suites/needle/compare/${i}/${side}`, rule: 'enum', message: `must be a policy label of the sweep: ${[...seen.keys()].map((k) => JSON.stringify(k)).join(', ')}`, allowed: [...seen.keys()] });
    }
  });
  if (issues.length > 0) throw new ConfigError(issues, context);
  const variants: Variant[] = [];
  for (const runtime of bench.runtimes ?? ['tfjs']) {
    for (const spec of specs) {
      const base = labelOf(spec);
      // tfjs keeps the plain labels and ids, so runs made before runtimes existed still resume.
      const label = runtime === 'tfjs' ? base : `${base} (${runtime})`;
      const options = validateAgainst<Record<string, unknown>>(kv.policies.get(spec.name).schema, spec.options ?? {}, `options of policy "${spec.name}"`);
      const budgets = spec.name === 'full' ? [1] : bench.budgets;
      const proportional = spec.proportional ?? bench.proportional;
      for (const budget of budgets) variants.push({ label, policy: spec.name, options, budget, id: runtime === 'tfjs' ? `${base}@${budget}` : `${base}@${budget}@${runtime}`, runtime, proportional });
    }
  }
  const suites = SUITE_NAMES.filter((s) => bench.suites[s] !== undefined);
  return { document: doc, bench, variants, suites, hash: hashOf(doc) };
}

/** JSON with object keys sorted, so equal documents hash equally. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

function hashOf(doc: BenchDocument): string {
  // The editor hint and the output folder do not change results.
  const { $schema: _s, ...rest } = doc;
  const { output: _o, ...bench } = rest.bench;
  return createHash('sha256').update(canonicalJson({ ...rest, bench })).digest('hex');
}
