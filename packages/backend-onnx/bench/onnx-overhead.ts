/**
 * ONNX Runtime backend benchmark (not a test): per-call overhead, per-kernel time and one layer's
 * compression time of H2O, CaM and KVMerger, next to the reference and tfjs backends, all in one run so
 * the figures compare as ratios.
 *
 * Usage, after `npx -y pnpm@12.4.2 build`:
 *   `npx -y pnpm@12.4.2 --filter @kvfold/backend-onnx bench -- [--heads 8] [--length 4096] [--dim 128] [--reps 10] [--threads 0] [--native-observe]`
 * (the script compiles bench/ and runs `node bench/dist/onnx-overhead.js`). Backends and policies are loaded by
 * package name and created through `KVFold` (validated options, guarded policies: what a user gets), so a
 * backend that is not installed or not built is reported and skipped. `onnx native CPU` appears when
 * `pnpm --filter @kvfold/backend-onnx build:native` ran. Progress goes to stderr, the Markdown table to stdout.
 * @module
 */
import { cpus } from 'node:os';
import { createContext, disposeLayer, hostLayer, hostTensor, KVFold, layerFromHost, type KVCachePolicy, type KVFoldPlugin, type KVKernels, type LayerCache } from '@kvfold/core';

/** One backend under test. */
interface Candidate {
  readonly label: string;
  readonly kernels: KVKernels<unknown>;
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} must be a non-negative number, got ${process.argv[i + 1]}`);
  return v;
}

function progress(msg: string): void {
  process.stderr.write(`[onnx-overhead] ${msg}\n`);
}

async function plugin(name: string): Promise<KVFoldPlugin | undefined> {
  try {
    return ((await import(name)) as { default: KVFoldPlugin }).default;
  } catch (e) {
    progress(`skipping ${name}: ${(e as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

async function backend(kv: KVFold, name: string, label: string, options: Record<string, unknown>): Promise<Candidate | undefined> {
  try {
    return { label, kernels: await kv.backend(name, options) };
  } catch (e) {
    progress(`skipping ${label}: ${(e as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

/** Median of `reps` timings (ms) of `f`, after `warm` untimed calls. */
async function median(f: () => unknown, reps: number, warm = 2): Promise<number> {
  for (let i = 0; i < warm; i++) await f();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await f();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)]!;
}

/** Median time, or NaN (printed as "failed") when the backend throws: one broken backend must not hide the others. */
async function tryMedian(label: string, what: string, setup: () => () => unknown, reps: number, warm?: number): Promise<number> {
  try {
    const ms = await median(setup(), reps, warm);
    progress(`${what} / ${label}: ${fmt(ms)}`);
    return ms;
  } catch (e) {
    progress(`${what} / ${label} failed: ${(e as Error).message.split('\n')[0]}`);
    return NaN;
  }
}

/** Deterministic pseudo-random numbers in [-2, 2) (mulberry32). */
function noise(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 4 - 2;
  }
  return out;
}

function fmt(ms: number): string {
  if (Number.isNaN(ms)) return 'failed';
  return ms < 0.1 ? `${(ms * 1000).toFixed(1)} µs` : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
}

async function main(): Promise<void> {
  const H = arg('heads', 8);
  const L = arg('length', 4096);
  const D = arg('dim', 128);
  const reps = arg('reps', 10);
  const threads = arg('threads', 0);
  const G = 4; // query heads per kv head (GQA)
  const N = 16; // observed queries (the prompt's last 16)

  const plugins = (await Promise.all(
    ['@kvfold/backend-reference', '@kvfold/backend-tfjs', '@kvfold/backend-onnx', '@kvfold/policy-h2o', '@kvfold/policy-cam', '@kvfold/policy-kvmerger'].map(plugin),
  )).filter((p): p is KVFoldPlugin => p !== undefined);
  const kv = KVFold.create({ plugins });
  const candidates = (
    await Promise.all([
      backend(kv, 'reference', 'reference', {}),
      backend(kv, 'tfjs', 'tfjs', {}),
      backend(kv, 'onnx', 'onnx function bodies', { native: 'off', threads }),
      backend(kv, 'onnx', 'onnx native CPU', { native: 'require', threads }),
      // On CPU observe defaults to its function body (an MLAS GEMM); this column times the native kernel too.
      process.argv.includes('--native-observe') ? backend(kv, 'onnx', 'onnx native CPU, native observe', { native: 'require', threads, observeKernel: 'native' }) : undefined,
    ])
  ).filter((c): c is Candidate => c !== undefined);
  const header = [
    `H=${H} kv heads, L=${L} slots, D=${D}; observe: ${G * H} query heads x ${N} queries; median of ${reps} (policies: of ${Math.max(3, Math.floor(reps / 2))})`,
    `Node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, onnx threads=${threads === 0 ? 'ORT default (one per core)' : threads}`,
    ...candidates.map((c) => `${c.label}: ${c.kernels.describe()}`),
  ];
  for (const h of header) progress(h);

  const rows: string[][] = [];
  const add = (name: string, vals: number[]) => rows.push([name, ...vals.map(fmt)]);

  // Per-call overhead: the smallest kernel on the smallest tensors, and a host round trip.
  const tiny: number[] = [];
  const trip: number[] = [];
  for (const c of candidates) {
    const k = c.kernels;
    tiny.push(await tryMedian(c.label, 'accumulate [1,4]', () => {
      const a = k.fromHost(hostTensor('float32', [1, 4], [1, 2, 3, 4]));
      return () => k.dispose(k.accumulate(a, a));
    }, 2000, 50));
    trip.push(await tryMedian(c.label, 'fromHost + toHost [1,4]', () => async () => {
      const t = k.fromHost(hostTensor('float32', [1, 4], [1, 2, 3, 4]));
      await k.toHost(t);
      k.dispose(t);
    }, 2000, 50));
  }
  add('per-call overhead: accumulate [1,4]', tiny);
  add('per-call overhead: fromHost + toHost [1,4]', trip);

  const host = hostLayer({ heads: H, length: L, headDim: D, keys: noise(H * L * D, 1), values: noise(H * L * D, 2), scores: noise(H * L, 3).map(Math.abs) });
  const layers = candidates.map((c) => layerFromHost(c.kernels, host) as LayerCache<unknown>);
  const half = Math.floor(L / 2);
  const kernelsTimed: [string, (k: KVKernels<unknown>, l: LayerCache<unknown>) => () => unknown][] = [
    ['adjacentCosine', (k, l) => () => k.dispose(k.adjacentCosine(l.keys))],
    ['topK (k = L/2)', (k, l) => () => k.dispose(k.topK(l.scores, half, 0, L))],
    ['gather (L/2 slots)', (k, l) => {
      const idx = k.fromHost(hostTensor('int32', [H, half], Int32Array.from({ length: H * half }, (_, i) => 2 * (i % half))));
      return () => disposeLayer(k, k.gather(l, idx));
    }],
    ['mergeSegments (pairs, count)', (k, l) => {
      const seg = k.fromHost(hostTensor('int32', [H, L], Int32Array.from({ length: H * L }, (_, i) => Math.min((i % L) >> 1, half - 1))));
      const pivot = k.fromHost(hostTensor('int32', [H, half], Int32Array.from({ length: H * half }, (_, i) => 2 * (i % half))));
      const sigma = k.fromHost(hostTensor('float32', [H, half], new Float32Array(H * half).fill(5)));
      return () => disposeLayer(k, k.mergeSegments(l, { segment: seg, pivot, sigma, valueScale: 'count' }));
    }],
    ['mergeIntoNeighbours (L/2 kept, 4 targets each)', (k, l) => {
      const keep = k.fromHost(hostTensor('int32', [H, half], Int32Array.from({ length: H * half }, (_, i) => 2 * (i % half))));
      const source = k.fromHost(hostTensor('int32', [H, half], Int32Array.from({ length: H * half }, (_, i) => 2 * (i % half) + 1)));
      const ts = k.fromHost(hostTensor('int32', [H, half], Int32Array.from({ length: H * half }, (_, i) => Math.max(0, Math.min(i % half, half - 4)))));
      const tc = k.fromHost(hostTensor('int32', [H, half], new Int32Array(H * half).fill(Math.min(4, half))));
      const gate = k.fromHost(hostTensor('float32', [H, half], new Float32Array(H * half).fill(1)));
      return () => disposeLayer(k, k.mergeIntoNeighbours(l, { keep, source, targetStart: ts, targetCount: tc, gate }));
    }],
    [`observe (${G * H} query heads x ${N} queries)`, (k, l) => {
      const q = k.fromHost(hostTensor('float32', [G * H, N, D], noise(G * H * N * D, 4)));
      const qp = k.fromHost(hostTensor('int32', [N], Int32Array.from({ length: N }, (_, i) => L - N + i)));
      return () => {
        const o = k.observe(l, q, qp);
        k.dispose(o.attention, o.lastAttention);
      };
    }],
  ];
  for (const [name, make] of kernelsTimed) {
    const vals: number[] = [];
    for (const [i, c] of candidates.entries()) vals.push(await tryMedian(c.label, name, () => make(c.kernels, layers[i]!), reps));
    add(name, vals);
  }

  // One layer's prefill compression to L/2, attention from each backend's own observe (not timed).
  for (const name of ['h2o', 'cam', 'kvmerger']) {
    let policy: KVCachePolicy;
    try {
      policy = kv.policy(name, {});
    } catch (e) {
      progress(`skipping policy ${name}: ${(e as Error).message.split('\n')[0]}`);
      continue;
    }
    const vals: number[] = [];
    for (const [i, c] of candidates.entries()) {
      const k = c.kernels;
      const l = layers[i]!;
      vals.push(await tryMedian(c.label, `${name} prefill`, () => {
        const q = k.fromHost(hostTensor('float32', [G * H, N, D], noise(G * H * N * D, 5)));
        const qp = k.fromHost(hostTensor('int32', [N], Int32Array.from({ length: N }, (_, t) => L - N + t)));
        const obs = k.observe(l, q, qp);
        return async () => {
          const out = await policy.prefill(l, { ...obs, queries: q }, createContext({ kernels: k, budget: half, promptLength: L, seed: 1 }));
          disposeLayer(k, out, l);
        };
      }, Math.max(3, Math.floor(reps / 2)), 1));
    }
    add(`${name} prefill to L/2 (one layer)`, vals);
  }

  const head = ['', ...candidates.map((c) => c.label)];
  console.log(header.map((h) => `- ${h}`).join('\n'));
  console.log(`\n| ${head.join(' | ')} |\n|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`);
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
}

await main();
