// KVMerger's wasm kernels alone (issue 12): adjacentCosine, screenSegments (the plan check), mergeSegments and
// mergeSimilar (the whole exact-budget compression, head by head: 16 protected slots per head, L/2 links merged,
// sigma 1; timed where every build has it) of @kvfold/wasm-kernels on 32 heads x L x 128 float32, split by heads as the reference backend splits them (this
// thread and workers claim one head at a time in one shared memory), each call starting from memory (64 MiB
// written first). The plan cuts each head into L/2 runs at random (about half of them single slots), pivots
// on each run's first slot, sigma 1, counts 1; keys drift slowly along a head. With several builds (--wasm),
// every round calls each build once, in a rotating order, so their ratio compares the same stretch of this
// noisy machine; each build's outputs must match the first build's (cosines and mergeSimilar's eligible links and
// lowest cosines bit for bit, merges within 1e-5 relative). Build a candidate with `node packages/wasm-kernels/scripts/build-wasm.mjs /tmp/x.wasm`, then
//   node bench/kvmerger-kernels.mjs --wasm packages/wasm-kernels/wasm/kernels.wasm,/tmp/x.wasm
//   node bench/kvmerger-kernels.mjs [--lengths 4096,16384] [--threads 1,2] [--reps 15] [--wasm a.wasm,b.wasm]
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
const arg = (k, d) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : d);
const ints = (k, d, lo, hi, what = `an integer in [${lo}, ${hi}]`) =>
  String(arg(k, d))
    .split(',')
    .map((s) => {
      const n = Number(s);
      if (!(Number.isInteger(n) && n >= lo && n <= hi)) throw new Error(`${k}: ${s} is not ${what}`);
      return n;
    });
const lengths = ints('--lengths', '4096,16384', 2, 65536, 'an even integer in [2, 65536]');
for (const L of lengths) if (L % 2 !== 0) throw new Error(`--lengths: ${L} is not an even integer in [2, 65536]`);
const threadCounts = ints('--threads', '1,2', 1, 16);
const [reps] = ints('--reps', '15', 1, 1000);
const builtIn = fileURLToPath(new URL('../packages/wasm-kernels/wasm/kernels.wasm', import.meta.url));
const wasmPaths = String(arg('--wasm', builtIn)).split(',');
const MAX_WASM_BYTES = 16 << 20;
const modules = wasmPaths.map((p) => {
  const bytes = readFileSync(p);
  if (bytes.length > MAX_WASM_BYTES) throw new Error(`--wasm: ${p} is ${bytes.length} bytes, more than ${MAX_WASM_BYTES}`);
  return new WebAssembly.Module(bytes);
});
const names = wasmPaths.map((p) => (p === builtIn ? 'committed' : p));
const H = 32;
const D = 128;
const maxThreads = Math.max(...threadCounts);
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];

/**
 * Run kernel `kind` (0 adjacentCosine, 1 mergeSegments, 2 mergeSimilar) of `k` on head `h` of the layout `lay`
 * with the scratch at `scratch` (per thread). Stringified into the workers, so it names nothing outside.
 */
function runHead(k, kind, b, h, lay, scratch) {
  const { L, M, D, P, at } = lay;
  const row = L * D * 4;
  if (kind === 0) {
    k.adjacentCosine(at.lk + h * row, at[`cos${b}`] + h * (L - 1) * 4, 1, L, D);
    return;
  }
  const out = M * D * 4;
  if (kind === 2) {
    k.mergeSimilar(
      at.lk + h * row, at.lv + h * row, at.lp + h * L * 4, at.lc + h * L * 4, at.ls + h * L * 4, at.prot + h * P * 4,
      1, L, D, P, L - M, -1, 1, 1,
      at[`sk${b}`] + h * out, at[`sv${b}`] + h * out, at[`sp${b}`] + h * M * 4, at[`sc${b}`] + h * M * 4, at[`ss${b}`] + h * M * 4,
      at[`lo${b}`] + h * 4, at[`el${b}`] + h * 4, scratch,
    );
    return;
  }
  k.mergeSegments(
    at.lk + h * row, at.lv + h * row, at.lp + h * L * 4, at.lc + h * L * 4, at.ls + h * L * 4,
    at.seg + h * L * 4, at.piv + h * M * 4, at.sig + h * M * 4, 1, L, D, M, 1,
    at[`ok${b}`] + h * out, at[`ov${b}`] + h * out, at[`op${b}`] + h * M * 4, at[`oc${b}`] + h * M * 4, at[`os${b}`] + h * M * 4,
    at.start + h * M * 4, at.end + h * M * 4, scratch, scratch + L * 4 + 64, scratch + L * 12 + 128,
  );
}

// Control words: 0 job number (-1: quit), 1 next head, 2 heads done, 3 kernel, 4 build, 5 threads in the job,
// 6 workers that have left the job (the caller waits for all of them before it resets the counters).
const WORKER = `
const { workerData } = require('node:worker_threads');
const { memory, modules, lay, scratch, slot } = workerData;
const ks = modules.map((m) => new WebAssembly.Instance(m, { env: { memory } }).exports);
const ctl = new Int32Array(memory.buffer, lay.at.ctl, 8);
${runHead.toString()}
for (let seen = 0; ; ) {
  Atomics.wait(ctl, 0, seen);
  seen = Atomics.load(ctl, 0);
  if (seen < 0) break;
  if (slot < ctl[5]) {
    for (let h; (h = Atomics.add(ctl, 1, 1)) < ${H}; ) {
      runHead(ks[ctl[4]], ctl[3], ctl[4], h, lay, scratch);
      Atomics.add(ctl, 2, 1);
    }
  }
  Atomics.add(ctl, 6, 1);
  Atomics.notify(ctl, 6);
}`;

for (const L of lengths) {
  const M = L / 2;
  const P = Math.min(16, L);
  const sizes = { lk: H * L * D * 4, lv: H * L * D * 4, lp: H * L * 4, lc: H * L * 4, ls: H * L * 4, seg: H * L * 4, piv: H * M * 4, sig: H * M * 4, start: H * M * 4, end: H * M * 4, prot: H * P * 4, ctl: 64 };
  for (let b = 0; b < modules.length; b++) {
    Object.assign(sizes, { [`cos${b}`]: H * (L - 1) * 4, [`ok${b}`]: H * M * D * 4, [`ov${b}`]: H * M * D * 4, [`op${b}`]: H * M * 4, [`oc${b}`]: H * M * 4, [`os${b}`]: H * M * 4 });
    Object.assign(sizes, { [`sk${b}`]: H * M * D * 4, [`sv${b}`]: H * M * D * 4, [`sp${b}`]: H * M * 4, [`sc${b}`]: H * M * 4, [`ss${b}`]: H * M * 4, [`lo${b}`]: H * 4, [`el${b}`]: H * 4 });
  }
  // mergeSimilar is timed only where every build has it (a build from before it has none).
  const probe = modules.map((m) => new WebAssembly.Instance(m, { env: { memory: new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true }) } }).exports);
  const similar = probe.every((k) => typeof k.mergeSimilar === 'function');
  // Per thread: mergeSegments' rows int32 [L], weights and value weights float64 [L]; or mergeSimilar's block.
  const scratchBytes = Math.max(L * 20 + 256, ...(similar ? probe.map((k) => Number(k.mergeSimilarScratch(L, L - M)) + 64) : []));
  const at = {};
  let bytes = 65536;
  for (const [k, n] of Object.entries(sizes)) {
    at[k] = bytes;
    bytes += Math.ceil(n / 64) * 64 + 64;
  }
  const scratchAt = (t) => bytes + t * scratchBytes;
  const memory = new WebAssembly.Memory({ initial: Math.ceil((bytes + maxThreads * scratchBytes) / 65536), maximum: 65536, shared: true });
  const buf = memory.buffer;
  const lay = { L, M, D, P, at };
  const keys = new Float32Array(buf, at.lk, H * L * D);
  const values = new Float32Array(buf, at.lv, H * L * D);
  let s = 12345;
  const rnd = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  for (let i = 0; i < keys.length; i++) {
    keys[i] = i % (L * D) >= D && rnd() < 0.8 ? keys[i - D] + 0.1 * (rnd() - 0.5) : rnd() - 0.5;
    values[i] = rnd() - 0.5;
  }
  new Int32Array(buf, at.lc, H * L).fill(1);
  new Float32Array(buf, at.ls, H * L).fill(0.5);
  new Float32Array(buf, at.sig, H * M).fill(1);
  const pos = new Int32Array(buf, at.lp, H * L);
  for (let i = 0; i < pos.length; i++) pos[i] = i % L;
  const seg = new Int32Array(buf, at.seg, H * L);
  const piv = new Int32Array(buf, at.piv, H * M);
  const gaps = new Int32Array(L - 1);
  const cut = new Uint8Array(L);
  for (let h = 0; h < H; h++) {
    // M - 1 distinct cuts among the L - 1 gaps (a partial Fisher-Yates shuffle).
    cut.fill(0);
    for (let i = 0; i < L - 1; i++) gaps[i] = i + 1;
    for (let j = 0; j < M - 1; j++) {
      const r = j + Math.floor(rnd() * (L - 1 - j));
      const g = gaps[r];
      gaps[r] = gaps[j];
      gaps[j] = g;
      cut[g] = 1;
    }
    let id = -1;
    for (let i = 0; i < L; i++) {
      if (i === 0 || cut[i] === 1) piv[h * M + ++id] = i;
      seg[h * L + i] = id;
    }
  }
  // Protected slots: the last P / 2 (a recent window) and P / 2 others at random (repeats allowed).
  const prot = new Int32Array(buf, at.prot, H * P);
  for (let h = 0; h < H; h++) for (let j = 0; j < P; j++) prot[h * P + j] = j < P >> 1 ? L - 1 - j : Math.floor(rnd() * L);
  const ctl = new Int32Array(buf, at.ctl, 8);
  const kernels = modules.map((m) => new WebAssembly.Instance(m, { env: { memory } }).exports);
  const workers = Array.from({ length: maxThreads - 1 }, (_, i) => new Worker(WORKER, { eval: true, workerData: { memory, modules, lay, scratch: scratchAt(i + 1), slot: i + 1 } }));
  const flush = new Float32Array(16 << 20);

  /** Milliseconds of one call of kernel `kind` of build `b` over `threads`, from memory. */
  const time = (kind, b, threads) => {
    flush.fill(Math.random());
    Atomics.store(ctl, 1, 0);
    Atomics.store(ctl, 2, 0);
    Atomics.store(ctl, 6, 0);
    ctl[3] = kind;
    ctl[4] = b;
    ctl[5] = threads;
    const t0 = performance.now();
    if (threads > 1) {
      Atomics.add(ctl, 0, 1);
      Atomics.notify(ctl, 0);
    }
    for (let h; (h = Atomics.add(ctl, 1, 1)) < H; ) {
      runHead(kernels[b], kind, b, h, lay, scratchAt(0));
      Atomics.add(ctl, 2, 1);
    }
    // Spin on the heads still running elsewhere (a wait would add the wake-up's latency to the time).
    while (Atomics.load(ctl, 2) < H);
    const ms = performance.now() - t0;
    if (threads > 1) for (let left = Atomics.load(ctl, 6); left < workers.length; left = Atomics.load(ctl, 6)) Atomics.wait(ctl, 6, left, 5);
    return ms;
  };
  /** Milliseconds of one screenSegments call of build `b` (one thread: the reference backend screens on its own thread). */
  const screen = (b) => {
    flush.fill(Math.random());
    const t0 = performance.now();
    const ok = kernels[b].screenSegments(at.seg, at.piv, at.sig, at.lc, H, L, M, 1);
    const ms = performance.now() - t0;
    if (ok !== 1) throw new Error(`${names[b]}: screenSegments refused a valid plan`);
    return ms;
  };

  // Workers start and instantiate before the first timed round.
  await new Promise((r) => setTimeout(r, 200));
  const jobs = [{ label: 'screenSegments', threads: 1, run: screen }];
  for (const t of threadCounts) {
    jobs.push({ label: `adjacentCosine`, threads: t, run: (b) => time(0, b, t) });
    jobs.push({ label: `mergeSegments`, threads: t, run: (b) => time(1, b, t) });
    if (similar) jobs.push({ label: `mergeSimilar`, threads: t, run: (b) => time(2, b, t) });
  }
  for (const job of jobs) {
    const samples = modules.map(() => []);
    for (let r = 0; r < reps + 2; r++) {
      for (let j = 0; j < modules.length; j++) {
        const b = (j + r) % modules.length;
        const ms = job.run(b);
        if (r >= 2) samples[b].push(ms);
      }
    }
    const base = median(samples[0]);
    const cells = samples.map((x, b) => `${names[b]} ${median(x).toFixed(2)} ms${b > 0 ? ` (${(median(x) / base).toFixed(2)}x)` : ''}`);
    console.log(`${job.label.padEnd(14)} L=${L} threads=${job.threads}: ${cells.join(', ')}  n=${reps}`);
  }
  // Every build computes the same thing: cosines bit for bit, merged rows within 1e-5 relative.
  const cos0 = new Uint32Array(buf, at.cos0, H * (L - 1));
  for (let b = 1; b < modules.length; b++) {
    const c = new Uint32Array(buf, at[`cos${b}`], H * (L - 1));
    for (let i = 0; i < c.length; i++) if (c[i] !== cos0[i]) throw new Error(`${names[b]}: adjacentCosine differs from ${names[0]} at ${i}`);
    for (const f of ['ok', 'ov']) {
      const x = new Float32Array(buf, at[`${f}0`], H * M * D);
      const y = new Float32Array(buf, at[`${f}${b}`], H * M * D);
      for (let i = 0; i < x.length; i++) {
        if (!(Math.abs(x[i] - y[i]) <= 1e-5 * Math.max(1, Math.abs(x[i])))) throw new Error(`${names[b]}: mergeSegments ${f === 'ok' ? 'keys' : 'values'} differ from ${names[0]} at ${i}: ${y[i]} against ${x[i]}`);
      }
    }
    if (!similar) continue;
    for (const f of ['sk', 'sv']) {
      const x = new Float32Array(buf, at[`${f}0`], H * M * D);
      const y = new Float32Array(buf, at[`${f}${b}`], H * M * D);
      for (let i = 0; i < x.length; i++) {
        if (!(Math.abs(x[i] - y[i]) <= 1e-5 * Math.max(1, Math.abs(x[i])))) throw new Error(`${names[b]}: mergeSimilar ${f === 'sk' ? 'keys' : 'values'} differ from ${names[0]} at ${i}: ${y[i]} against ${x[i]}`);
      }
    }
    for (const f of ['lo', 'el', 'sp']) {
      const x = new Uint32Array(buf, at[`${f}0`], f === 'sp' ? H * M : H);
      const y = new Uint32Array(buf, at[`${f}${b}`], f === 'sp' ? H * M : H);
      for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) throw new Error(`${names[b]}: mergeSimilar ${f === 'lo' ? 'lowest cosines' : f === 'el' ? 'eligible links' : 'positions'} differ from ${names[0]} at ${i}`);
    }
  }
  Atomics.store(ctl, 0, -1);
  Atomics.notify(ctl, 0);
  await Promise.all(workers.map((w) => new Promise((r) => w.once('exit', r))));
}
