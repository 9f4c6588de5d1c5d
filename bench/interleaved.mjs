// Prefill compression on several backends, interleaved call by call (issue 12, targets 1-2). The speed preset
// times each backend's items one after the other, so on a shared machine whose speed drifts by tens of percent
// within minutes (bench/RESULTS.md) a ratio of two backends' medians also compares two stretches of time. Here
// every round calls each backend once, in a rotating order, so drift falls on all of them alike; each call is
// the suite's own (`prefillOnce` in packages/bench/src/suites/speed.ts: fresh upload not timed, caches flushed,
// the result's counts read back inside the timed region), on the suite's synthetic cache (32 kv heads x 128
// dims, budget L/2, seed 1), with the policy's default options, unguarded, after 2 untimed rounds.
// Interleaving also costs each backend the state its own previous call left (the other backends' data went
// through the caches and TLB in between), so its times run higher than the preset's: compare ratios, not ms.
//   node bench/interleaved.mjs [--backends reference,onnx,tfjs] [--policies h2o,cam,kvmerger] [--lengths 4096,16384] [--reps 15]
// Backends: reference, reference1 (one thread), tfjs, tfjs2 (kvfold's kernels on two threads in tfjs-backend-wasm's
// threaded build, which only starts if no tfjs backend before it in --backends has started tfjs's wasm engine:
// list it before tfjs), onnx, onnx1 (one ORT thread), onnx-cached (native
// kernels with non-temporal stores off: `nativeStreamingMinBytes` set above any output before each call), and
// reference-unfused, tfjs-unfused, onnx-unfused: the same backends with `kernels()` reporting mergeSimilar as not implemented, so
// KVMerger runs its chain of kernels (cosines, topK, linkSegments, mergeSegments) with the link mask on the host,
// as before that kernel existed; reference-hostplan, tfjs-hostplan, onnx-hostplan: mergeSimilar and linkSegments
// both reported as not implemented, so KVMerger makes its segment plan on the host (as before linkSegments existed).
// Build first (pnpm build; `build:native` for the native onnx kernels). Prints one row per backend with the
// median, its ratio to the first backend's median, and "x floor" (copy bandwidth measured in the process).
import { createKVFold, measureCopyBandwidth } from '../packages/bench/dist/index.js';
import { prefillOnce, prepareCase } from '../packages/bench/dist/suites/speed.js';

const argv = process.argv.slice(2);
const arg = (k, d) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : d);
const list = (k, d) => arg(k, d).split(',').filter(Boolean);
const backendNames = list('--backends', 'reference,onnx,tfjs');
const policies = list('--policies', 'h2o,cam,kvmerger');
const lengths = list('--lengths', '4096,16384').map(Number);
const reps = Math.max(1, Math.min(1000, Number(arg('--reps', '15'))));
const WARMUPS = 2;
const heads = 32;
const headDim = 128;
const seed = 1;
const NEVER = Number.MAX_SAFE_INTEGER;

const SPECS = {
  reference: ['reference', {}],
  reference1: ['reference', { threads: 1 }],
  tfjs: ['tfjs', {}],
  tfjs2: ['tfjs', { threads: 2 }],
  onnx: ['onnx', {}],
  onnx1: ['onnx', { threads: 1 }],
  'onnx-cached': ['onnx', {}],
  'reference-unfused': ['reference', {}, ['mergeSimilar']],
  'tfjs-unfused': ['tfjs', {}, ['mergeSimilar']],
  'onnx-unfused': ['onnx', {}, ['mergeSimilar']],
  'reference-hostplan': ['reference', {}, ['mergeSimilar', 'linkSegments']],
  'tfjs-hostplan': ['tfjs', {}, ['mergeSimilar', 'linkSegments']],
  'onnx-hostplan': ['onnx', {}, ['mergeSimilar', 'linkSegments']],
};

/** `kernels` whose `kernels()` reports the kernels `names` as running the reference: KVMerger then does not call them. */
function hiding(kernels, names) {
  const hidden = Object.create(kernels);
  hidden.kernels = () => kernels.kernels().map((i) => (names.includes(i.name) ? { ...i, runs: 'reference' } : i));
  return hidden;
}
for (const b of backendNames) if (!SPECS[b]) throw new Error(`--backends: unknown backend "${b}"; allowed: ${Object.keys(SPECS).join(', ')}`);
for (const L of lengths) if (!(Number.isInteger(L) && L >= 2 && L <= 65536)) throw new Error(`--lengths: ${L} is not an integer in [2, 65536]`);

const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
const kv = await createKVFold({});
const backends = [];
for (const name of backendNames) {
  const [backend, options, hidden] = SPECS[name];
  const bound = await kv.backend(backend, options);
  const kernels = hidden ? hiding(bound, hidden) : bound;
  // The streaming threshold is process-wide: remember the default and set it before every call.
  const streaming = kernels.nativeStreamingMinBytes?.();
  if (name === 'onnx-cached' && streaming === undefined) throw new Error('onnx-cached needs the native onnx kernels (pnpm --filter @kvfold/backend-onnx build:native)');
  backends.push({ name, kernels, threshold: name === 'onnx-cached' ? NEVER : streaming, describe: kernels.describe?.() ?? backend });
}
console.log(`node ${process.version}; ${backends.map((b) => `${b.name}: ${b.describe}`).join('; ')}`);

for (const length of lengths) {
  const prepared = await prepareCase(backends[0].kernels, heads, length, headDim, seed);
  const kvBytes = 2 * heads * length * headDim * 4;
  for (const policyName of policies) {
    const policy = Object.fromEntries(backends.map((b) => [b.name, kv.policy(policyName, {}, { guard: false })]));
    const samples = Object.fromEntries(backends.map((b) => [b.name, []]));
    const budget = length / 2;
    let kept = 0;
    for (let r = 0; r < reps + WARMUPS; r++) {
      // Rotate the order so no backend always runs right after the same other one.
      for (let i = 0; i < backends.length; i++) {
        const b = backends[(i + r) % backends.length];
        if (b.threshold !== undefined) b.kernels.nativeStreamingMinBytes(b.threshold);
        const one = await prefillOnce(b.kernels, policy[b.name], prepared, budget, seed);
        kept = one.kept;
        if (r >= WARMUPS) samples[b.name].push(one.ms);
      }
    }
    const bandwidth = measureCopyBandwidth(kvBytes);
    const floorMs = ((kvBytes + 2 * heads * kept * headDim * 4) / bandwidth) * 1000;
    const base = median(samples[backends[0].name]);
    for (const b of backends) {
      const m = median(samples[b.name]);
      console.log(
        `${policyName.padEnd(8)} L=${String(length).padEnd(5)} ${b.name.padEnd(11)} median ${m.toFixed(2).padStart(7)} ms  ` +
          `${(m / base).toFixed(2)}x ${backends[0].name}  ${(m / floorMs).toFixed(2)}x floor  n=${reps}  [${samples[b.name].map((x) => x.toFixed(1)).join(' ')}]`,
      );
    }
    console.log(`${policyName.padEnd(8)} L=${String(length).padEnd(5)} floor ${floorMs.toFixed(2)} ms (copy ${(bandwidth / 1e9).toFixed(1)} GB/s, measured after the rounds)`);
  }
}
process.exit(0);
