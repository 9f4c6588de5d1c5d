// CaM's merge plan on the host (`planNeighbourMerge`, packages/policy-cam/src/plan.ts), alone: the host part of
// every CaM compression on every backend (issue 12). 32 heads x L slots with random scores in [0, 1), the best
// half kept per head (as the H2O rule would keep them), Bernoulli gates; one scratch set reused across calls,
// as the policy does. Median of 40 calls after 5 untimed ones. The selection here is a random half of each head;
// a prefill's H2O selection keeps its recent window whole, and a plan that is faster here can be slower there
// (bench/RESULTS.md, seventh session: a three-pass plan took 12.4 -> 10.5 ms here and made onnx's CaM prefill's
// host part 1-2 ms slower). Check a change in a prefill too.
//   node bench/cam-plan.mjs [--lengths 4096,16384] [--m 32]
// Build first (pnpm build).
import { createRng, HostScratch } from '../packages/core/dist/index.js';
import { planNeighbourMerge } from '../packages/policy-cam/dist/index.js';

const argv = process.argv.slice(2);
const arg = (k, d) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : d);
const lengths = arg('--lengths', '4096,16384').split(',').map(Number);
const m = Number(arg('--m', '32'));
if (!(Number.isInteger(m) && m >= 1 && m <= 1_000_000)) throw new Error(`--m: ${m} is not an integer in [1, 1000000]`);
for (const L of lengths) if (!(Number.isInteger(L) && L >= 2 && L <= 65536 && L % 2 === 0)) throw new Error(`--lengths: ${L} is not an even integer in [2, 65536]`);
const heads = 32;
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];

for (const L of lengths) {
  const r = createRng(3);
  const kept = L / 2;
  const keep = new Int32Array(heads * kept);
  const scores = [];
  for (let h = 0; h < heads; h++) {
    const s = new Float32Array(L).map(() => r.next());
    scores.push(s);
    const best = Array.from({ length: L }, (_, i) => i).sort((a, b) => s[b] - s[a] || a - b).slice(0, kept).sort((a, b) => a - b);
    keep.set(best, h * kept);
  }
  const scratch = new HostScratch();
  const times = [];
  for (let c = 0; c < 45; c++) {
    const t0 = performance.now();
    planNeighbourMerge(keep, scores, m, 'bernoulli', createRng(c), scratch);
    if (c >= 5) times.push(performance.now() - t0);
  }
  console.log(`planNeighbourMerge ${heads} heads x ${L} slots, ${kept} kept, m = ${m}: median ${median(times).toFixed(2)} ms (min ${Math.min(...times).toFixed(2)}, n = ${times.length})`);
}
