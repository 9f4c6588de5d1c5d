/**
 * Named configurations. `default` is the full default sweep (the bench/RESULTS.md run); `demo` is its
 * short version for `kvfold demo` ({@link DEMO_SUMMARY}); `smoke` runs every suite in seconds for tests;
 * `speed` is the compression-speed table of bench/RESULTS.md (one layer of 32 kv heads x 128 dims at 4k and
 * 16k tokens per backend against the memory-copy floor, a decode step against its attention, the growth
 * from 1k to 32k tokens; under 5 minutes on 2 cores).
 * Each is a plain config document: bench/<name>.json holds the same document for editors and CI.
 */

import { needleTaskOf, type NeedleFiller } from './config.js';

/** Names of the built-in presets. */
export const PRESET_NAMES = ['default', 'demo', 'smoke', 'speed'] as const;

/** A built-in preset name. */
export type PresetName = (typeof PRESET_NAMES)[number];

const SWEEP = { policies: ['full', 'window', 'h2o', 'cam', 'kvmerger'], budgets: [0.5, 0.35, 0.2] };

/**
 * The default sweep compares policies at equal final slot counts, in two labelled settings (issue 14):
 * held at the budget during decoding (evicting policies with `decode: "evict"`, KVMerger re-merging with
 * `decodeInterval: 1`) and prefill-only (`decode: "keep"`; KVMerger's paper default), where every row ends
 * an item with the same slots (budget + the tokens fed after the compression). KVMerger has three rows in
 * the prefill-only setting: the paper (|S| value scaling, plain attention), proportional (unscaled values,
 * log(count) attention) and the no-merge ablation (same protection, merging off).
 */
const EQUAL_BUDGET_POLICIES = [
  'full',
  ...['random', 'window', 'knorm', 'snapkv', 'h2o', 'cam'].flatMap((name) => [
    { name, label: name, options: { decode: 'evict' } },
    { name, label: `${name}-prefill`, options: { decode: 'keep' } },
  ]),
  { name: 'kvmerger', label: 'kvmerger-held', options: { decodeInterval: 1 } },
  { name: 'kvmerger', label: 'kvmerger', options: { valueScale: 'count', decodeInterval: 0 } },
  { name: 'kvmerger', label: 'kvmerger-proportional', options: { valueScale: 'none', decodeInterval: 0 }, proportional: true },
  { name: 'kvmerger', label: 'kvmerger-nomerge', options: { minSimilarity: 1, decodeInterval: 0 } },
];

/** The pairs whose difference the report tests (the claims the README makes), at equal final slots. */
const CLAIMS = [
  ...['random', 'window', 'knorm', 'snapkv', 'h2o', 'cam'].map((b) => ({ a: 'kvmerger', b: `${b}-prefill` })),
  ...['window', 'snapkv', 'h2o'].map((b) => ({ a: 'kvmerger-held', b })),
  { a: 'kvmerger', b: 'kvmerger-nomerge' },
  { a: 'kvmerger', b: 'kvmerger-proportional' },
  { a: 'h2o', b: 'random' },
];

/** The built-in config documents (validated like any user config). */
export const PRESETS: { readonly [K in PresetName]: Record<string, unknown> } = {
  default: {
    seed: 0,
    bench: {
      name: 'default',
      model: 'embedded',
      policies: EQUAL_BUDGET_POLICIES,
      budgets: SWEEP.budgets,
      suites: {
        // 4 lengths x 5 depths x 5 samples = 100 items per row and filler. Recall is left out: the
        // embedded model scores 29-44% on it with the full cache (packages/model-tiny/TASKS.md), so a
        // policy's recall would measure the model's guessing, not the cache.
        needle: { lengths: [256, 512, 1024, 2048], depths: [0, 0.25, 0.5, 0.75, 1], samples: 5, fillers: ['grammar', 'prose'], recall: null, compare: CLAIMS },
        fidelity: { contexts: [512, 2048], probes: 64, samples: 10, backend: 'reference' },
        perplexity: { context: 1024, continuation: 512, samples: 4, chunk: 64 },
        speed: {
          // Compression cost does not depend on the decode setting: one row per policy.
          throughput: { backends: ['reference', 'tfjs', 'onnx'], heads: 8, length: 4096, headDim: 64, budget: 0.5, reps: 5, policies: ['random', 'window', 'knorm', 'snapkv', 'h2o', 'cam', 'kvmerger'] },
          decode: { prompt: 1024, tokens: 64 },
          scaling: { backend: 'reference', lengths: [1024, 2048, 4096, 8192, 16384, 32768], heads: 4, headDim: 64, budget: 0.5, reps: 7, policies: ['h2o', 'cam', 'kvmerger'] },
        },
      },
    },
  },
  demo: {
    seed: 0,
    bench: {
      name: 'demo',
      model: 'embedded',
      ...SWEEP,
      suites: {
        needle: { lengths: [256, 512, 1024, 2048], depths: [0, 0.25, 0.5, 0.75, 1], samples: 1, recall: { lengths: [512], pairs: [4], samples: 4 } },
        fidelity: { contexts: [1024], probes: 64, samples: 1, backend: 'reference' },
        perplexity: { context: 512, continuation: 256, samples: 1, chunk: 64 },
        speed: {
          throughput: { backends: ['reference', 'tfjs', 'onnx'], heads: 4, length: 2048, headDim: 64, budget: 0.5, reps: 3 },
          decode: { prompt: 512, tokens: 32 },
          scaling: { backend: 'reference', lengths: [1024, 2048, 4096, 8192, 16384, 32768], heads: 4, headDim: 64, budget: 0.5, reps: 3 },
        },
      },
    },
  },
  speed: {
    seed: 0,
    bench: {
      name: 'speed',
      model: 'embedded',
      policies: [
        'h2o',
        'cam',
        'kvmerger',
        // Lazy compaction: evict 64 slots once every 64 decoded tokens instead of one at every token.
        { name: 'h2o', label: 'h2o-every64', options: { decode: { every: 64 } } },
        { name: 'cam', label: 'cam-every64', options: { decode: { every: 64 } } },
      ],
      budgets: [0.5],
      baseline: false,
      suites: {
        speed: {
          throughput: {
            // reference: the wasm kernels on two threads (the default on two cores); reference(threads=1): on one;
            // reference(kernels=js): every kernel in TypeScript (the wasm kernels off), same pooled memory;
            // reference(poolBytes=0): outputs in fresh memory every call (the default allocator's figure; js kernels);
            // tfjs(threads=2): kvfold's kernels on two threads in tfjs-backend-wasm's threaded build, which kvfold
            // starts (listed before tfjs, so that the build is tfjs's wasm engine for both rows: it can only replace
            // an engine nothing has started); tfjs: the default, one thread (on that engine, whose tfjs ops run on
            // one thread as the stock build's do);
            // tfjs(kernels=tfjs): every kernel a tfjs op program (kvfold's wasm kernels in the engine off);
            // onnx(threads=1): one ORT thread, like reference(threads=1) and the single-threaded tfjs row.
            backends: [
              'reference',
              { name: 'reference', options: { threads: 1 } },
              { name: 'reference', options: { kernels: 'js' } },
              { name: 'reference', options: { poolBytes: 0 } },
              { name: 'tfjs', options: { threads: 2 } },
              'tfjs',
              { name: 'tfjs', options: { kernels: 'tfjs' } },
              'onnx',
              { name: 'onnx', options: { threads: 1 } },
            ],
            policies: ['h2o', 'cam', 'kvmerger'],
            heads: 32,
            length: 4096,
            lengths: [4096, 16384],
            headDim: 128,
            budget: 0.5,
            // Median of 7 after 2 untimed calls, as the PyTorch yardstick measures.
            reps: 7,
          },
          step: { backends: ['reference', 'tfjs', 'onnx', { name: 'onnx', options: { threads: 1 } }], policies: ['h2o', 'cam', 'h2o-every64', 'cam-every64'], heads: 32, length: 4096, headDim: 128, group: 1, reps: 7 },
          decode: null,
          scaling: { backend: 'reference', policies: ['h2o', 'cam', 'kvmerger'], lengths: [1024, 2048, 4096, 8192, 16384, 32768], heads: 8, headDim: 128, budget: 0.5, reps: 3 },
        },
      },
    },
  },
  smoke: {
    seed: 0,
    bench: {
      name: 'smoke',
      model: 'embedded',
      policies: ['full', 'window', 'h2o', 'cam', 'kvmerger'],
      budgets: [0.5],
      suites: {
        needle: { lengths: [96], depths: [0.5], samples: 1, recall: { lengths: [96], pairs: [2], samples: 1 } },
        fidelity: { contexts: [48], probes: 8, samples: 1, backend: 'reference' },
        perplexity: { context: 32, continuation: 16, samples: 1, chunk: 8 },
        speed: {
          throughput: { backends: ['reference'], heads: 2, length: 128, headDim: 16, budget: 0.5, reps: 1 },
          step: { backends: ['reference'], heads: 2, length: 64, headDim: 16, group: 1, reps: 1 },
          decode: { prompt: 32, tokens: 4 },
          scaling: { backend: 'reference', lengths: [64, 128, 256], heads: 1, headDim: 16, budget: 0.5, reps: 1 },
        },
      },
    },
  },
};

/** A deep copy of a preset document. */
export function preset(name: PresetName): Record<string, unknown> {
  return structuredClone(PRESETS[name]);
}

/**
 * What `kvfold demo` does and how long it takes: the one statement the CLI prints and every guide quotes
 * (test/docs.test.ts checks that they do). The duration was measured on the project's 2-core machine:
 * 70 s of CPU time, 2 min 24 s of wall time at a load average of 8.
 */
export const DEMO_SUMMARY =
  'kvfold demo runs the benchmark\'s short sweep (preset demo) on the embedded model: policies full, window, h2o, cam and kvmerger ' +
  'at budgets 0.5, 0.35 and 0.2 through the needle, fidelity, perplexity and speed suites, about 1 to 3 minutes on 2 cores depending on load; ' +
  'it prints the summary table with a legend, then the paths of report.md and the SVG plots in its run folder';

/**
 * The sample sizes of a preset's accuracy figures, as `kvfold demo` prints them ("passkey n=20 per row,
 * recall n=4 per row"): the demo's numbers are a smoke test, and its n says how far they can be trusted.
 */
export function presetSampleSizes(name: PresetName): string {
  const needle = ((PRESETS[name]['bench'] as { suites?: { needle?: Record<string, unknown> } }).suites?.needle ?? null) as {
    lengths: number[];
    depths: number[];
    samples: number;
    fillers?: string[];
    recall?: { lengths: number[]; pairs: number[]; samples: number } | null;
  } | null;
  if (!needle) return 'no accuracy suite';
  const passkey = needle.lengths.length * needle.depths.length * needle.samples;
  const parts = (needle.fillers ?? ['grammar']).map((f) => `${needleTaskOf(f as NeedleFiller)} n=${passkey} per row`);
  if (needle.recall) parts.push(`recall n=${needle.recall.lengths.length * needle.recall.pairs.length * needle.recall.samples} per row`);
  return parts.join(', ');
}
