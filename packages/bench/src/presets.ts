/**
 * Named configurations. `default` is the full default sweep (the bench/RESULTS.md run); `demo` is its
 * short version for `kvfold demo` ({@link DEMO_SUMMARY}); `smoke` runs every suite in seconds for tests.
 * Each is a plain config document: bench/<name>.json holds the same document for editors and CI.
 */

/** Names of the built-in presets. */
export const PRESET_NAMES = ['default', 'demo', 'smoke'] as const;

/** A built-in preset name. */
export type PresetName = (typeof PRESET_NAMES)[number];

const SWEEP = { policies: ['full', 'window', 'h2o', 'cam', 'kvmerger'], budgets: [0.5, 0.35, 0.2] };

/** The built-in config documents (validated like any user config). */
export const PRESETS: { readonly [K in PresetName]: Record<string, unknown> } = {
  default: {
    seed: 0,
    bench: {
      name: 'default',
      model: 'embedded',
      ...SWEEP,
      suites: {
        needle: { lengths: [256, 512, 1024, 2048], depths: [0, 0.25, 0.5, 0.75, 1], samples: 2, recall: { lengths: [512, 1024], pairs: [4], samples: 8 } },
        fidelity: { contexts: [512, 2048], probes: 64, samples: 2, backend: 'reference' },
        perplexity: { context: 1024, continuation: 512, samples: 4, chunk: 64 },
        speed: {
          throughput: { backends: ['reference', 'tfjs', 'onnx'], heads: 8, length: 4096, headDim: 64, budget: 0.5, reps: 5 },
          decode: { prompt: 1024, tokens: 64 },
          scaling: { backend: 'reference', lengths: [1024, 2048, 4096, 8192, 16384, 32768], heads: 4, headDim: 64, budget: 0.5, reps: 7 },
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
