import { describe, it } from 'vitest';
import { hostTensor } from '@kvfold/core';
import { checkAllKernels, ENGINES, expectClose, kernelsFor, randomF32, randomLayer, ref, rng, upload } from './helpers.js';

/**
 * Fixed cases spanning the required ranges (1 and 64 kv heads, lengths 1 and 8192, head dims 16 and
 * 256) without a huge product: 64 heads at short and medium lengths, 8192 slots at few heads.
 */
const CASES = [
  { H: 64, L: 1, D: 256 },
  { H: 64, L: 64, D: 256 },
  { H: 64, L: 512, D: 16 },
  { H: 1, L: 8192, D: 256 },
  { H: 4, L: 8192, D: 16 },
  { H: 1, L: 1, D: 16 },
] as const;

for (const engine of ENGINES) {
  describe(`tfjs ${engine}: large fixed cases equal the reference`, () => {
    for (const { H, L, D } of CASES) {
      it(`${H} kv heads x ${L} slots x ${D} dims`, async () => {
        await checkAllKernels(await kernelsFor(engine), H, L, D);
      });
    }

    // 1,024 queries on wasm; 384 (a full 256-query chunk and a partial one) on cpu, whose matMul runs at
    // about 0.3 GFLOP/s.
    const n = engine === 'wasm' ? 1024 : 384;
    it(`observe over a long prefill: ${n} queries x 8,192 slots (chunked, two-level sums)`, async () => {
      const k = await kernelsFor(engine);
      const r = rng(7);
      const L = 8192;
      const base = randomLayer(1, L, 16, r);
      const q = randomF32([1, n, 16], r);
      const qp = hostTensor('int32', [n], Array.from({ length: n }, (_, t) => base.positions.data[L - n + t]!));
      const a = upload(k, base);
      const [tq, tp] = [k.fromHost(q), k.fromHost(qp)];
      const out = k.observe(a, tq, tp);
      const want = ref.observe(upload(ref, base), q, qp);
      expectClose(await k.toHost(out.attention), want.attention, 'observe sums');
      expectClose(await k.toHost(out.lastAttention), want.lastAttention, 'observe last');
      k.dispose(tq, tp, out.attention, out.lastAttention, a.keys, a.values, a.positions, a.counts, a.scores);
    });
  });
}

// The wasm engine does adjacentCosine and mergeSegments in blocks of whole heads (about 4 M elements),
// and skips the per-key scaling of adjacentCosine when every key's norm is safe. One head here is above
// the block size, so both kernels run three blocks; and keys of norm 0, 1e-30 and 1e25 take the scaled
// program, whose result must not change either.
describe('tfjs wasm: head blocks and the unscaled cosine equal the reference', () => {
  it('3 kv heads x 1,100 slots x 4,096 dims: one head per block', async () => {
    await checkAllKernels(await kernelsFor('wasm'), 3, 1100, 4096);
  });

  for (const [what, factor] of [
    ['a zero key', 0],
    ['a key of norm about 1e-30', 1e-30],
    ['a key of norm about 1e25', 1e25],
  ] as const) {
    it(`adjacentCosine with ${what} among ordinary ones`, async () => {
      const k = await kernelsFor('wasm');
      const [H, L, D] = [4, 300, 64];
      const keys = randomF32([H, L, D], rng(11));
      // One key in the second head, scaled (a zero key's cosines are 0 by definition).
      const row = (1 * L + 17) * D;
      for (let d = 0; d < D; d++) keys.data[row + d] = keys.data[row + d]! * factor;
      const t = k.fromHost(keys);
      const got = k.adjacentCosine(t);
      expectClose(await k.toHost(got), ref.adjacentCosine(keys), `adjacentCosine, ${what}`);
      k.dispose(t, got);
    });
  }
});
