// The in-place decode step (issue 12, target 4) on the cache layout the speed suite times and on the one a
// long in-place decode reaches. The suite's step runs on a fresh cache in position order; after many in-place
// steps each head's rows hold positions in no order (every step moves the newest row into the evicted one),
// which makes the host scans' branches unpredictable. Timed by the suite's own step (`stepOnce` in
// packages/bench/src/suites/speed.ts): a fresh upload per rep, caches flushed, the token's attention (observe)
// then the policy's step; 3 untimed reps first, as the suite had when the figures in bench/RESULTS.md were taken
// (the suite now runs 20).
//   node bench/step-layout.mjs [--backends reference,onnx,onnx1] [--policies h2o,cam] [--layouts ordered,permuted] [--reps 40]
// onnx1 = onnx with one ORT thread. Build first (pnpm build). For the attention column run one backend per
// process: with the reference backend created first in the same process, onnx's two-thread attention took
// 35-40 ms here instead of the 14 ms it takes alone (not investigated); the step column did not move.
import { disposeLayer, hostTensor, layerFromHost } from '../packages/core/dist/index.js';
import { stepOnce } from '../packages/bench/dist/suites/speed.js';
import { syntheticLayer } from '../packages/testkit/dist/index.js';
import { createReferenceKernels } from '../packages/backend-reference/dist/index.js';
import { createOnnxKernels } from '../packages/backend-onnx/dist/index.js';
import { H2OPolicy } from '../packages/policy-h2o/dist/index.js';
import { CaMPolicy } from '../packages/policy-cam/dist/index.js';

const argv = process.argv.slice(2);
const arg = (k, d) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : d);
const backends = arg('--backends', 'reference,onnx,onnx1').split(',');
const policies = arg('--policies', 'h2o,cam').split(',');
const layouts = arg('--layouts', 'ordered,permuted').split(',');
const reps = Math.max(1, Math.min(1000, Number(arg('--reps', '40'))));
const WARMUPS = 3;
const heads = 32;
const length = 4096;
const headDim = 128;
const queries = 17;
const L = length + 1;
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];

/** The suite's step cache (budget + the token just appended), its scores 16 earlier queries' attention. */
async function prepare(kernels, layout) {
  const data = syntheticLayer({ heads, length: L, headDim, queryHeads: heads, queries, seed: 1 });
  const layer = layerFromHost(kernels, data.layer);
  const [q, qp] = [kernels.fromHost(data.queries), kernels.fromHost(data.queryPositions)];
  const seen = kernels.observe(layer, q, qp);
  const history = await kernels.toHost(seen.attention);
  const last = await kernels.toHost(seen.lastAttention);
  kernels.dispose(q, qp, seen.attention, seen.lastAttention);
  disposeLayer(kernels, layer);
  if (layout === 'permuted') {
    // Rows 1..L-2 of every head shuffled (row 0 a sink, the last row the newest token): positions, scores
    // and the newest token's attention alike, so each slot keeps its own values.
    let s = 7;
    const next = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32;
    for (let h = 0; h < heads; h++) {
      for (let j = L - 2; j > 1; j--) {
        const a = h * L + 1 + Math.floor(next() * j);
        const b = h * L + j;
        for (const arr of [data.layer.positions.data, history.data, last.data]) [arr[a], arr[b]] = [arr[b], arr[a]];
      }
    }
  }
  const query = new Float32Array(heads * headDim);
  for (let h = 0; h < heads; h++) query.set(data.queries.data.subarray((h * queries + queries - 1) * headDim, (h * queries + queries) * headDim), h * headDim);
  return { layer: { ...data.layer, scores: history }, attention: last, query: hostTensor('float32', [heads, 1, headDim], query), queryPosition: hostTensor('int32', [1], [L - 1]) };
}

async function time(kernels, policy, p) {
  const steps = [];
  const attention = [];
  for (let r = 0; r < reps + WARMUPS; r++) {
    const { stepMs, attentionMs } = await stepOnce(kernels, policy, p, length, 0);
    if (r >= WARMUPS) {
      attention.push(attentionMs);
      steps.push(stepMs);
    }
  }
  return { step: median(steps), attention: median(attention) };
}

console.log(`| backend | policy | layout | step | attention | step / attention |\n| --- | --- | --- | ---: | ---: | ---: |`);
for (const b of backends) {
  const kernels = b === 'reference' ? createReferenceKernels() : createOnnxKernels(b === 'onnx1' ? { threads: 1 } : {});
  for (const layout of layouts) {
    const p = await prepare(kernels, layout);
    for (const name of policies) {
      const policy = name === 'cam' ? new CaMPolicy() : new H2OPolicy();
      const m = await time(kernels, policy, p);
      console.log(`| ${b === 'onnx1' ? 'onnx(threads=1)' : b} | ${name} | ${layout} | ${m.step.toFixed(2)} ms | ${m.attention.toFixed(1)} ms | ${((100 * m.step) / m.attention).toFixed(1)}% |`);
    }
  }
}
