// Compression time of the policies on the tfjs backend (wasm and cpu engines) and on the reference
// backend, measured in one process and one run, reported as ratios to the reference. A benchmark, not a
// test: nothing here asserts a speed.
//
//   pnpm --filter @kvfold/backend-tfjs bench [-- --lengths 1024,4096,16384 --backends reference,wasm,cpu
//                                            --policies h2o,cam,kvmerger,window --kernels --resume]
//
// Every cell (policy x length x backend) is the median wall time of `policy.prefill` on a fresh upload of
// the same synthetic layer (8 kv heads x L tokens x 128 dims, budget L / 2) with the same attention,
// including the download of the result's positions (so lazily finished work is counted). Uploads are
// not timed. Results are saved after every cell to bench/dist/compression.json; `--resume` skips the
// cells already there, so an interrupted run loses at most one cell.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KVFold, createContext, disposeLayer, layerFromHost, type HostTensor, type KVKernels, type LayerCache } from '@kvfold/core';
import reference from '@kvfold/backend-reference';
import baselines from '@kvfold/policy-baselines';
import h2o from '@kvfold/policy-h2o';
import cam from '@kvfold/policy-cam';
import kvmerger from '@kvfold/policy-kvmerger';
import { syntheticLayer } from '@kvfold/testkit';
import tfjs from '@kvfold/backend-tfjs';

const HEADS = 8;
const QUERY_HEADS = 32;
const HEAD_DIM = 128;
const QUERIES = 16;

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
}
const lengths = (flag('lengths') ?? '1024,4096,16384').split(',').map(Number);
const backends = (flag('backends') ?? 'reference,wasm,cpu').split(',') as ('reference' | 'wasm' | 'cpu')[];
const policies = (flag('policies') ?? 'h2o,cam,kvmerger,window').split(',');
const withKernels = process.argv.includes('--kernels');
const resume = process.argv.includes('--resume');

const here = dirname(fileURLToPath(import.meta.url));
const out = here.endsWith('dist') ? here : join(here, 'dist');
const store = join(out, 'compression.json');

/** One measured cell. */
interface Cell {
  readonly what: string;
  readonly length: number;
  readonly backend: string;
  readonly ms: number;
  readonly runs: number;
}

const saved: Cell[] = resume && existsSync(store) ? (JSON.parse(readFileSync(store, 'utf8')) as { cells: Cell[] }).cells : [];
const cells = new Map<string, Cell>(saved.map((c) => [`${c.what}|${c.length}|${c.backend}`, c]));
const describe: Record<string, string> = {};

function save(): void {
  mkdirSync(out, { recursive: true });
  writeFileSync(store, JSON.stringify({ cells: [...cells.values()], describe }, null, 1));
}

/** Repetitions: fewer for long caches and the slow cpu engine; the first run of each cell is a warm-up. */
function repsFor(length: number, backend: string): number {
  const base = length <= 1024 ? 9 : length <= 4096 ? 5 : 3;
  return backend === 'cpu' && length > 4096 ? 2 : base;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

const total = lengths.length * backends.length * (policies.length + (withKernels ? 7 : 0));
let done = 0;
function progress(c: Cell, skipped: boolean): void {
  done++;
  console.error(`[${done}/${total}] ${c.backend.padEnd(9)} ${c.what.padEnd(20)} L=${String(c.length).padEnd(6)} ${c.ms.toFixed(1)} ms (median of ${c.runs})${skipped ? ' (from the saved run)' : ''}`);
}

/** `run` does one repetition and returns the milliseconds of its timed part. */
async function time(run: () => Promise<number>, reps: number): Promise<{ ms: number; runs: number }> {
  await run();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) ts.push(await run());
  return { ms: median(ts), runs: reps };
}

/** Time `call` and its sync (both timed), then `after` (not timed). */
async function timed<R>(call: () => R | Promise<R>, sync: (r: R) => Promise<unknown>, after: (r: R) => void): Promise<number> {
  const t0 = performance.now();
  const r = await call();
  await sync(r);
  const ms = performance.now() - t0;
  after(r);
  return ms;
}

async function measure(what: string, length: number, backend: string, run: () => Promise<number>): Promise<void> {
  const key = `${what}|${length}|${backend}`;
  const have = cells.get(key);
  if (have) return progress(have, true);
  const { ms, runs } = await time(run, repsFor(length, backend));
  const c = { what, length, backend, ms, runs };
  cells.set(key, c);
  save();
  progress(c, false);
}

const kv = KVFold.create({ plugins: [reference, tfjs, baselines, h2o, cam, kvmerger] });
const kernels: Record<string, KVKernels<unknown>> = {};
for (const b of backends) {
  kernels[b] = b === 'reference' ? await kv.backend('reference') : await kv.backend('tfjs', { engine: b });
  describe[b] = kernels[b]!.describe();
}
const ref = (kernels.reference ?? (await kv.backend('reference'))) as KVKernels<HostTensor>;
console.error(`compression benchmark: ${HEADS} kv heads (${QUERY_HEADS} query heads) x {${lengths.join(', ')}} tokens x ${HEAD_DIM} dims, budget L/2`);
for (const b of backends) console.error(`  ${b}: ${describe[b]}`);

for (const length of lengths) {
  console.error(`L=${length}: generating the layer and its attention (reference observe, not timed)`);
  const data = syntheticLayer({ heads: HEADS, queryHeads: QUERY_HEADS, length, headDim: HEAD_DIM, seed: 1, queries: QUERIES });
  const seen = ref.observe(layerFromHost(ref, data.layer), data.queries, data.queryPositions);
  const budget = length / 2;
  for (const b of backends) {
    const k = kernels[b]!;
    for (const name of policies) {
      const policy = kv.policy(name);
      await measure(name, length, b, async () => {
        const layer = layerFromHost(k, data.layer);
        const [attention, lastAttention] = [k.fromHost(seen.attention), k.fromHost(seen.lastAttention)];
        const ctx = createContext({ kernels: k, budget, promptLength: length, seed: 1 });
        return timed(
          () => policy.prefill(layer, { attention, lastAttention }, ctx),
          (result) => k.toHost(result.positions),
          (result) => {
            k.dispose(attention, lastAttention);
            disposeLayer(k, layer, result);
            disposeLayer(k, result);
          },
        );
      });
    }
    if (withKernels) await measureKernels(k, b, data, length);
  }
}

/** Per-kernel times on the same layer (what the policies are made of). */
async function measureKernels(k: KVKernels<unknown>, b: string, data: ReturnType<typeof syntheticLayer>, length: number): Promise<void> {
  const layer: LayerCache<unknown> = layerFromHost(k, data.layer);
  const scores = k.fromHost(data.layer.scores);
  const half = length / 2;
  const index = k.topK(layer.scores, half, 0, length);
  const seg = new Int32Array(HEADS * length).map((_, i) => (i % length) >> 1);
  const pivot = new Int32Array(HEADS * half).map((_, i) => (i % half) * 2);
  const plan = {
    segment: k.fromHost({ dtype: 'int32', shape: [HEADS, length], data: seg }),
    pivot: k.fromHost({ dtype: 'int32', shape: [HEADS, half], data: pivot }),
    sigma: k.fromHost({ dtype: 'float32', shape: [HEADS, half], data: new Float32Array(HEADS * half).fill(5) }),
    valueScale: 'count' as const,
  };
  // CaM's shape: every other slot kept, each evicted slot spread over its next 32 kept ones.
  const src = new Int32Array(HEADS * half).map((_, i) => (i % half) * 2 + 1);
  const start = new Int32Array(HEADS * half).map((_, i) => (i % half) + 1);
  const count = start.map((s) => Math.max(0, Math.min(32, half - s)));
  const camPlan = {
    keep: k.fromHost({ dtype: 'int32', shape: [HEADS, half], data: new Int32Array(HEADS * half).map((_, i) => (i % half) * 2) }),
    source: k.fromHost({ dtype: 'int32', shape: [HEADS, half], data: src }),
    targetStart: k.fromHost({ dtype: 'int32', shape: [HEADS, half], data: start }),
    targetCount: k.fromHost({ dtype: 'int32', shape: [HEADS, half], data: count }),
    gate: k.fromHost({ dtype: 'float32', shape: [HEADS, half], data: new Float32Array(HEADS * half).fill(1) }),
  };
  const q = k.fromHost(data.queries);
  const qp = k.fromHost(data.queryPositions);
  const fields = (l: LayerCache<unknown>) => [l.keys, l.values, l.positions, l.counts, l.scores];
  const one = (t: unknown) => k.toHost(t);
  const runs: [string, () => Promise<number>][] = [
    ['accumulate', () => timed(() => k.accumulate(layer.scores, scores), one, (x) => k.dispose(x))],
    ['topK (L/2)', () => timed(() => k.topK(layer.scores, half, 0, length), one, (x) => k.dispose(x))],
    ['gather (L/2)', () => timed(() => k.gather(layer, index), (x) => one(x.values), (x) => k.dispose(...fields(x)))],
    ['adjacentCosine', () => timed(() => k.adjacentCosine(layer.keys), one, (x) => k.dispose(x))],
    ['mergeSegments (pairs)', () => timed(() => k.mergeSegments(layer, plan), (x) => one(x.values), (x) => k.dispose(...fields(x)))],
    ['mergeIntoNeighbours', () => timed(() => k.mergeIntoNeighbours(layer, camPlan), (x) => one(x.values), (x) => k.dispose(...fields(x)))],
    ['observe (32 x 16 q)', () => timed(() => k.observe(layer, q, qp), (x) => one(x.attention), (x) => k.dispose(x.attention, x.lastAttention))],
  ];
  for (const [name, run] of runs) await measure(`kernel ${name}`, length, b, run);
  k.dispose(...fields(layer), scores, index, plan.segment, plan.pivot, plan.sigma, ...Object.values(camPlan), q, qp);
}

// The table: absolute medians and ratios to the reference measured in this run.
const names = [...policies, ...(withKernels ? ['accumulate', 'topK (L/2)', 'gather (L/2)', 'adjacentCosine', 'mergeSegments (pairs)', 'mergeIntoNeighbours', 'observe (32 x 16 q)'].map((n) => `kernel ${n}`) : [])];
const label = (b: string): string => (b === 'reference' ? 'reference' : `tfjs ${b}`);
const fmt = (ms: number): string => (ms >= 100 ? `${ms.toFixed(0)} ms` : ms >= 10 ? `${ms.toFixed(1)} ms` : `${ms.toFixed(2)} ms`);
const lines = [`| | L | ${backends.map(label).join(' | ')} |`, `|---|---:|${backends.map(() => '---:').join('|')}|`];
for (const what of names) {
  for (const length of lengths) {
    const r = cells.get(`${what}|${length}|reference`);
    const row = backends.map((b) => {
      const c = cells.get(`${what}|${length}|${b}`);
      if (!c) return 'not measured';
      return b === 'reference' || !r ? fmt(c.ms) : `${fmt(c.ms)} (${(c.ms / r.ms).toFixed(2)}x)`;
    });
    lines.push(`| ${what} | ${length} | ${row.join(' | ')} |`);
  }
}
const header = [
  `${HEADS} kv heads (${QUERY_HEADS} query heads) x L tokens x ${HEAD_DIM} dims, budget L/2, policy defaults; median wall time of one prefill (ratio = time / reference time in this run).`,
  `Node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}.`,
  ...backends.map((b) => `- ${label(b)}: ${describe[b] ?? '(saved run)'}`),
];
const table = [...header, '', ...lines].join('\n');
console.log(table);
writeFileSync(join(out, 'compression.md'), `${table}\n`);
