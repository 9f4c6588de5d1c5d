import type { GroupReduction, KernelImplementation, LayerCache, ObserveCall, ObservedAttention } from '@kvfold/core';
import { ort } from '../ort.js';
import type { SessionCache } from '../cache.js';
import { ALLOW_ZERO, attr, GraphBuilder, type FunctionDef } from '../graph.js';
import { float32Scalar, type OnnxTensor } from '../tensor.js';

const END = 2 ** 62;

/** `group_reduction` attribute codes. */
export const GROUP_REDUCTION_CODE: Record<GroupReduction, number> = { mean: 0, max: 1, sum: 2 };

/**
 * `ai.kvfold::Observe(keys f32[H,L,D], positions i32[H,L], counts i32[H,L], queries f32[QH,N,D],
 *  query_positions i32[N], scale f32[1]; group_reduction, proportional) -> (sums f32[H,L], last f32[H,L])`:
 * causal softmax attention of the queries over the cache, reduced to kv heads.
 *
 * Attributes: `group_reduction` 0 = mean, 1 = max, 2 = sum over the query heads of a group (applied to
 * each query head's sum over queries, and to its last-query row); `proportional` 1 adds `log(count)`.
 * A query that sees no slot contributes zeros.
 *
 * Body: queries reshaped to `[H, G, N, D]` and one batched MatMul against `[H, 1, D, L]` keys, so kv heads
 * are never copied per query head; masked logits get -inf before Softmax; all three group reductions
 * are computed (they are `[H, G, L]`, small) and the attribute selects one with Where.
 */
export const OBSERVE: FunctionDef = {
  name: 'Observe',
  inputs: ['keys', 'positions', 'counts', 'queries', 'query_positions', 'scale'],
  outputs: ['sums', 'last'],
  attributes: ['group_reduction', 'proportional'],
  body(b) {
    const H = b.shape('keys', 0, 1);
    const QH = b.shape('queries', 0, 1);
    const G = b.op('Div', [QH, H]);
    const N = b.shape('queries', 1, 2);
    const D = b.shape('queries', 2, 3);
    const q = b.op('Reshape', ['queries', b.concat([H, G, N, D], 0)], ALLOW_ZERO);
    const kt = b.unsqueeze(b.op('Transpose', ['keys'], { perm: attr.ints([0, 2, 1]) }), [1]);
    const logits = b.op('Mul', [b.op('MatMul', [q, kt]), 'scale']); // [H, G, N, L]
    const prop = b.cast(b.op('Constant', [], { value_int: attr.ref('proportional', 'int') }), 'float32');
    const logCount = b.unsqueeze(b.op('Log', [b.cast('counts', 'float32')]), [1, 2]);
    const biased = b.op('Add', [logits, b.op('Mul', [logCount, prop])]);
    const visible = b.op('LessOrEqual', [b.unsqueeze('positions', [1, 2]), b.unsqueeze('query_positions', [0, 1, 3])]); // [H, 1, N, L]
    const masked = b.op('Where', [visible, biased, b.f32(-Infinity, true)]);
    const p0 = b.op('Softmax', [masked], { axis: attr.int(3) });
    const any = b.reduce('ReduceMax', b.cast(visible, 'float32'), [3], true);
    const zero = b.f32(0, true);
    const p = b.op('Where', [b.op('Greater', [any, zero]), p0, zero]);
    const perHeadSums = b.reduce('ReduceSum', p, [2], false); // [H, G, L]
    const perHeadLast = b.squeeze(b.slice(p, [-1], [END], [2]), [2]);
    const code = b.op('Constant', [], { value_int: attr.ref('group_reduction', 'int') });
    const isMax = b.op('Equal', [code, b.i64(1, true)]);
    const isSum = b.op('Equal', [code, b.i64(2, true)]);
    const reduce = (x: string, name: string) => {
      const sel = b.op('Where', [isSum, b.reduce('ReduceSum', x, [1], false), b.reduce('ReduceMean', x, [1], false)]);
      b.opN('Where', [isMax, b.reduce('ReduceMax', x, [1], false), sel], {}, { names: [name] });
    };
    reduce(perHeadSums, 'sums');
    reduce(perHeadLast, 'last');
  },
};

/** The observe model for one group reduction and proportional flag. */
export function observeModel(reduction: GroupReduction, proportional: boolean): Uint8Array {
  const g = new GraphBuilder(`observe_${reduction}_${proportional ? 'prop' : 'plain'}`);
  g.input('keys', 'float32', ['H', 'L', 'D']);
  g.input('positions', 'int32', ['H', 'L']);
  g.input('counts', 'int32', ['H', 'L']);
  g.input('queries', 'float32', ['QH', 'N', 'D']);
  g.input('query_positions', 'int32', ['N']);
  g.input('scale', 'float32', [1]);
  g.custom(
    OBSERVE,
    ['keys', 'positions', 'counts', 'queries', 'query_positions', 'scale'],
    { group_reduction: attr.int(GROUP_REDUCTION_CODE[reduction]), proportional: attr.int(proportional ? 1 : 0) },
    ['sums', 'last'],
  );
  g.output('sums', 'float32', ['H', 'L']);
  g.output('last', 'float32', ['H', 'L']);
  return g.build();
}

/** Largest `[queryHeads, n, length]` logits block one call materialises before observe splits the work. */
export const OBSERVE_BLOCK = 1 << 22;

/**
 * Attention of `queries` over the cache, reduced to kv heads (KVKernels.observe).
 *
 * With function bodies a call materialises `queryHeads * n * length` logits; above `block` elements
 * (default {@link OBSERVE_BLOCK}; the native kernels pass Infinity: they work row by row) the work is split
 * per query head and query block, and the group reduction is done here.
 */
export function observe(cache: SessionCache, block: number = OBSERVE_BLOCK): KernelImplementation<ObserveCall<OnnxTensor>, ObservedAttention<OnnxTensor>> {
  return { run: (call) => attend(cache, call, block) };
}

/** The arguments {@link observeBlocks} works from. */
interface ObserveArgs {
  readonly H: number;
  readonly L: number;
  readonly D: number;
  readonly QH: number;
  readonly N: number;
  readonly reduction: GroupReduction;
  readonly proportional: boolean;
  readonly scale: number;
}

function attend(cache: SessionCache, call: ObserveCall<OnnxTensor>, block: number): ObservedAttention<OnnxTensor> {
  const { layer, queries, queryPositions, dims } = call;
  const a: ObserveArgs = { H: dims.heads, L: dims.length, D: dims.headDim, QH: call.queryHeads, N: call.n, reduction: call.reduction, proportional: call.proportional, scale: call.scale };
  // Nothing to attend with or to: the contract's answer is zeros, without a model run.
  if (a.N === 0 || a.H * a.L === 0) {
    return { attention: new ort.Tensor('float32', new Float32Array(a.H * a.L), [a.H, a.L]), lastAttention: new ort.Tensor('float32', new Float32Array(a.H * a.L), [a.H, a.L]) };
  }
  const scale = float32Scalar(a.scale);
  const run = (reduction: GroupReduction, keys: OnnxTensor, positions: OnnxTensor, counts: OnnxTensor, q: OnnxTensor, qp: OnnxTensor) => {
    const key = `observe_${reduction}_${a.proportional ? 'prop' : 'plain'}`;
    const s = cache.get(key, 'float32', () => observeModel(reduction, a.proportional));
    const [sums, last] = s.run({ keys, positions, counts, queries: q, query_positions: qp, scale }, ['sums', 'last']);
    return { attention: sums!, lastAttention: last! };
  };
  if (a.QH * a.N * a.L <= block) return run(a.reduction, layer.keys, layer.positions, layer.counts, queries, queryPositions);
  return observeBlocks(a, layer, queries, queryPositions, run, block);
}

type Runner = (reduction: GroupReduction, keys: OnnxTensor, positions: OnnxTensor, counts: OnnxTensor, q: OnnxTensor, qp: OnnxTensor) => ObservedAttention<OnnxTensor>;

function observeBlocks(a: ObserveArgs, layer: LayerCache<OnnxTensor>, queries: OnnxTensor, queryPositions: OnnxTensor, run: Runner, limit: number): ObservedAttention<OnnxTensor> {
  const { H, L, D, QH, N } = a;
  const G = QH / H;
  const block = Math.max(1, Math.floor(limit / Math.max(L, 1)));
  const kd = layer.keys.data as Float32Array;
  const pd = layer.positions.data as Int32Array;
  const cd = layer.counts.data as Int32Array;
  const qd = queries.data as Float32Array;
  const qpd = queryPositions.data as Int32Array;
  const sums = new Float32Array(H * L);
  const last = new Float32Array(H * L);
  const headSum = new Float32Array(L);
  for (let h = 0; h < H; h++) {
    const keys = new ort.Tensor('float32', kd.slice(h * L * D, (h + 1) * L * D), [1, L, D]);
    const positions = new ort.Tensor('int32', pd.slice(h * L, (h + 1) * L), [1, L]);
    const counts = new ort.Tensor('int32', cd.slice(h * L, (h + 1) * L), [1, L]);
    for (let g = 0; g < G; g++) {
      const qh = h * G + g;
      headSum.fill(0);
      let headLast: Float32Array | undefined;
      for (let t0 = 0; t0 < N; t0 += block) {
        const t1 = Math.min(N, t0 + block);
        const q = new ort.Tensor('float32', qd.slice((qh * N + t0) * D, (qh * N + t1) * D), [1, t1 - t0, D]);
        const qp = new ort.Tensor('int32', qpd.slice(t0, t1), [t1 - t0]);
        const r = run('sum', keys, positions, counts, q, qp);
        const s = r.attention.data as Float32Array;
        for (let l = 0; l < L; l++) headSum[l] += s[l]!;
        if (t1 === N) headLast = r.lastAttention.data as Float32Array;
      }
      for (let l = 0; l < L; l++) {
        const o = h * L + l;
        const x = headSum[l]!;
        const y = headLast![l]!;
        if (a.reduction === 'max') {
          sums[o] = g === 0 ? x : Math.max(sums[o]!, x);
          last[o] = g === 0 ? y : Math.max(last[o]!, y);
        } else {
          sums[o] += x;
          last[o] += y;
        }
      }
    }
  }
  if (a.reduction === 'mean') {
    for (let i = 0; i < sums.length; i++) {
      sums[i] /= G;
      last[i] /= G;
    }
  }
  return { attention: new ort.Tensor('float32', sums, [H, L]), lastAttention: new ort.Tensor('float32', last, [H, L]) };
}
