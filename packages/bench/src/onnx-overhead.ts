/**
 * ONNX Runtime backend micro-benchmark: per-call overhead, per-kernel time and one-layer compression time,
 * next to the reference and tfjs backends.
 *
 * Usage (after `pnpm build`): `node packages/bench/dist/onnx-overhead.js [--heads 8] [--length 4096] [--dim 128] [--reps 20]`.
 * Backends are loaded through their plugins' default exports, so one that is not installed or not built is
 * reported and skipped. `onnx native` appears when `pnpm --filter @kvfold/backend-onnx build:native` ran.
 * @module
 */
import {
  createContext,
  disposeLayer,
  hostLayer,
  hostTensor,
  layerFromHost,
  silentLogger,
  type KVCachePolicy,
  type KVFoldPlugin,
  type KVKernels,
  type LayerCache,
} from '@kvfold/core';

/** One backend under test. */
interface Candidate {
  readonly label: string;
  readonly kernels: KVKernels<unknown>;
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

async function plugin(name: string): Promise<KVFoldPlugin | undefined> {
  try {
    return ((await import(name)) as { default: KVFoldPlugin }).default;
  } catch (e) {
    console.error(`skipping ${name}: ${(e as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

async function backend(pkg: string, label: string, options: Record<string, unknown>): Promise<Candidate | undefined> {
  const p = await plugin(pkg);
  const def = p?.backends[0];
  if (!def) return undefined;
  try {
    return { label, kernels: await (def.create as (o: unknown, s: unknown) => Promise<KVKernels<unknown>>)(options, { logger: silentLogger }) };
  } catch (e) {
    console.error(`skipping ${label}: ${(e as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

/** Median of `reps` timings (ms) of `f`, after `warm` untimed calls. */
async function median(f: () => unknown | Promise<unknown>, reps: number, warm = 2): Promise<number> {
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

/** Deterministic pseudo-random numbers in [-2, 2). */
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

/** Median time, or NaN (printed as "failed") when the backend throws: one broken backend must not hide the others. */
async function tryMedian(label: string, what: string, f: () => (() => unknown | Promise<unknown>), reps: number, warm?: number): Promise<number> {
  try {
    return await median(f(), reps, warm);
  } catch (e) {
    console.error(`${label} ${what} failed: ${(e as Error).message.split('\n')[0]}`);
    return NaN;
  }
}

function fmt(ms: number): string {
  if (Number.isNaN(ms)) return 'failed';
  return ms < 0.1 ? `${(ms * 1000).toFixed(1)} µs` : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
}

async function main(): Promise<void> {
  const H = arg('heads', 8);
  const L = arg('length', 4096);
  const D = arg('dim', 128);
  const reps = arg('reps', 20);
  const threads = arg('threads', 0);
  const candidates = (
    await Promise.all([
      backend('@kvfold/backend-reference', 'reference', {}),
      backend('@kvfold/backend-tfjs', 'tfjs', {}),
      backend('@kvfold/backend-onnx', 'onnx (function bodies)', { native: 'off', threads }),
      backend('@kvfold/backend-onnx', 'onnx (native CPU kernels)', { native: 'require', threads }),
    ])
  ).filter((c): c is Candidate => c !== undefined);
  console.log(`# kvfold onnx-overhead: H=${H} L=${L} D=${D}, median of ${reps}, Node ${process.version}`);
  for (const c of candidates) console.log(`- ${c.label}: ${c.kernels.describe()}`);

  const rows: string[][] = [];
  const head = ['kernel', ...candidates.map((c) => c.label)];
  const add = (name: string, vals: number[]) => rows.push([name, ...vals.map(fmt)]);

  // Per-call overhead: the smallest kernel on the smallest tensors.
  const tiny: number[] = [];
  for (const c of candidates) {
    const k = c.kernels;
    tiny.push(
      await tryMedian(c.label, 'accumulate', () => {
        const a = k.fromHost(hostTensor('float32', [1, 4], [1, 2, 3, 4]));
        return () => k.dispose(k.accumulate(a, a));
      }, 2000, 50),
    );
  }
  add('per-call overhead (accumulate [1,4])', tiny);

  const host = hostLayer({ heads: H, length: L, headDim: D, keys: noise(H * L * D, 1), values: noise(H * L * D, 2), scores: noise(H * L, 3).map(Math.abs) });
  const layers = candidates.map((c) => layerFromHost(c.kernels, host) as LayerCache<unknown>);
  const kernelsTimed: [string, (k: KVKernels<unknown>, l: LayerCache<unknown>, i: number) => () => unknown][] = [
    ['adjacentCosine', (k, l) => () => k.dispose(k.adjacentCosine(l.keys))],
    ['topK (k = L/2)', (k, l) => () => k.dispose(k.topK(l.scores, L / 2, 0, L))],
    ['gather (L/2 slots)', (k, l) => {
      const idx = k.fromHost(hostTensor('int32', [H, L / 2], Int32Array.from({ length: (H * L) / 2 }, (_, i) => 2 * (i % (L / 2)))));
      return () => disposeLayer(k, k.gather(l, idx));
    }],
    ['mergeSegments (pairs)', (k, l) => {
      const seg = k.fromHost(hostTensor('int32', [H, L], Int32Array.from({ length: H * L }, (_, i) => (i % L) >> 1)));
      const pivot = k.fromHost(hostTensor('int32', [H, L / 2], Int32Array.from({ length: (H * L) / 2 }, (_, i) => 2 * (i % (L / 2)))));
      const sigma = k.fromHost(hostTensor('float32', [H, L / 2], new Float32Array((H * L) / 2).fill(5)));
      return () => disposeLayer(k, k.mergeSegments(l, { segment: seg, pivot, sigma, valueScale: 'count' }));
    }],
    ['mergeIntoNeighbours (m = 4)', (k, l) => {
      const K = L / 2;
      const keep = k.fromHost(hostTensor('int32', [H, K], Int32Array.from({ length: H * K }, (_, i) => 2 * (i % K))));
      const source = k.fromHost(hostTensor('int32', [H, K], Int32Array.from({ length: H * K }, (_, i) => 2 * (i % K) + 1)));
      const ts = k.fromHost(hostTensor('int32', [H, K], Int32Array.from({ length: H * K }, (_, i) => Math.min(i % K, K - 4))));
      const tc = k.fromHost(hostTensor('int32', [H, K], new Int32Array(H * K).fill(4)));
      const gate = k.fromHost(hostTensor('float32', [H, K], new Float32Array(H * K).fill(1)));
      return () => disposeLayer(k, k.mergeIntoNeighbours(l, { keep, source, targetStart: ts, targetCount: tc, gate }));
    }],
    ['observe (4 query heads/group, 16 queries)', (k, l) => {
      const q = k.fromHost(hostTensor('float32', [4 * H, 16, D], noise(4 * H * 16 * D, 4)));
      const qp = k.fromHost(hostTensor('int32', [16], Int32Array.from({ length: 16 }, (_, i) => L - 16 + i)));
      return () => {
        const o = k.observe(l, q, qp);
        k.dispose(o.sums, o.last);
      };
    }],
  ];
  for (const [name, make] of kernelsTimed) {
    const vals: number[] = [];
    for (const [i, c] of candidates.entries()) vals.push(await tryMedian(c.label, name, () => make(c.kernels, layers[i]!, i), reps));
    add(name, vals);
  }

  // One layer's compression at a 50% budget, attention from the backend's own observe of 16 queries.
  const policies: [string, string][] = [['H2O', '@kvfold/policy-h2o'], ['CaM', '@kvfold/policy-cam'], ['KVMerger', '@kvfold/policy-kvmerger']];
  for (const [name, pkg] of policies) {
    const p = (await plugin(pkg))?.policies[0];
    if (!p) continue;
    const policy = (p.create as (o: unknown) => KVCachePolicy)({});
    const vals: number[] = [];
    for (const [i, c] of candidates.entries()) {
      const k = c.kernels;
      const l = layers[i]!;
      vals.push(
        await tryMedian(c.label, name, () => {
          const q = k.fromHost(hostTensor('float32', [4 * H, 16, D], noise(4 * H * 16 * D, 5)));
          const qp = k.fromHost(hostTensor('int32', [16], Int32Array.from({ length: 16 }, (_, t) => L - 16 + t)));
          const obs = k.observe(l, q, qp);
          return async () => {
            const out = await policy.prefill(l, { attention: obs.sums, lastAttention: obs.last, queries: q }, createContext({ kernels: k, budget: L / 2, promptLength: L, seed: 1 }));
            disposeLayer(k, out, l);
          };
        }, Math.max(3, Math.floor(reps / 4)), 1),
      );
    }
    add(`${name} prefill to L/2 (one layer)`, vals);
  }

  console.log(`\n| ${head.join(' | ')} |\n|${head.map(() => '---').join('|')}|`);
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
}

await main();
