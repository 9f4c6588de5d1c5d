import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError } from '@kvfold/core';
import { modelTinyPath, passkeySample } from '@kvfold/model-tiny';
import { GraphBuilder, onnx } from '@kvfold/onnx-graph';
import { byteTokenizer } from '@kvfold/runtime';
import { exportOnnx, exposeAttention, exposeAttentionFile, FusedAttentionError } from '../src/index.js';

const H = 2;
const D = 16;

function feeds(ids: readonly number[], past?: Record<string, ort.Tensor>): Record<string, ort.Tensor> {
  const n = ids.length;
  const L = past ? past['present.0.key']!.dims[2]! : 0;
  const f: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, n]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(L + n).fill(1n), [1, L + n]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from(ids, (_, i) => BigInt(L + i)), [1, n]),
    num_logits_to_keep: new ort.Tensor('int64', BigInt64Array.from([0n]), []),
  };
  for (let i = 0; i < 3; i++) {
    for (const kv of ['key', 'value']) f[`past_key_values.${i}.${kv}`] = past ? past[`present.${i}.${kv}`]! : new ort.Tensor('float32', new Float32Array(0), [1, H, 0, D]);
  }
  return f;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('expose-attention', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kvfold-expose-'));
    await exportOnnx(modelTinyPath, join(dir, 'native'));
    // The Optimum-layout fixture: K/V repeated per query head, additive 4-D mask, no attention_sums.
    await exportOnnx(modelTinyPath, join(dir, 'plain'), { layout: 'plain' });
    // kvfold's grouped layout without the outputs: 5-D probabilities [B, KH, G, n, T].
    await exportOnnx(modelTinyPath, join(dir, 'grouped'), { attentionSums: false });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.each(['plain', 'grouped'])('on the %s-layout export gives the native export\'s attention_sums, at the prompt and over a past', async (layout) => {
    const plainPath = join(dir, layout, 'onnx', 'model.onnx');
    const plain = await ort.InferenceSession.create(plainPath);
    expect(plain.outputNames.some((n) => n.startsWith('attention_sums'))).toBe(false);
    const res = await exposeAttentionFile(plainPath, join(dir, layout, 'onnx', 'model_exposed.onnx'));
    expect(res.layers).toBe(3);
    expect(res.softmaxNodes).toHaveLength(3);
    const exposed = await ort.InferenceSession.create(res.output);
    const native = await ort.InferenceSession.create(join(dir, 'native', 'onnx', 'model.onnx'));
    const ids = byteTokenizer({ bosTokenId: 256 }).encode(passkeySample({ length: 180, depth: 0.5, seed: 4 }).prompt);
    const a = await exposed.run(feeds(ids));
    const b = await native.run(feeds(ids));
    const p = await plain.run(feeds(ids));
    expect(maxAbsDiff(a.logits!.data as Float32Array, p.logits!.data as Float32Array)).toBe(0);
    for (let i = 0; i < 3; i++) {
      expect(a[`attention_sums.${i}`]!.dims).toEqual([1, H, ids.length]);
      for (const o of [`attention_sums.${i}`, `attention_last.${i}`]) expect(maxAbsDiff(a[o]!.data as Float32Array, b[o]!.data as Float32Array)).toBeLessThan(1e-5);
    }
    const more = [32, 87, 104, 97, 116];
    const a2 = await exposed.run(feeds(more, a));
    const b2 = await native.run(feeds(more, b));
    for (let i = 0; i < 3; i++) {
      for (const o of [`attention_sums.${i}`, `attention_last.${i}`]) expect(maxAbsDiff(a2[o]!.data as Float32Array, b2[o]!.data as Float32Array)).toBeLessThan(1e-5);
    }
    for (const s of [plain, exposed, native]) await s.release();
  });

  it('uses attribute axes on opsets before 13/18 and reduces GQA groups as asked', async () => {
    // A one-layer attention core at opset 13: probs [1, 4, 2, 3] over values repeated from present.0.value [1, 2, 3, 1].
    const g = new GraphBuilder('mini');
    g.input('logits', 'float32', [1, 4, 2, 3]);
    g.input('values', 'float32', [1, 2, 3, 1]);
    const v = g.opN('Identity', ['values'], {}, { names: ['present.0.value'] })[0]!;
    g.opN('Identity', ['values'], {}, { names: ['present.0.key'] });
    const rep = g.op('Reshape', [g.op('Expand', [g.unsqueeze(v, [2]), g.i64([1, 2, 2, 3, 1])]), g.i64([1, 4, 3, 1])]);
    g.opN('MatMul', [g.op('Softmax', ['logits'], { axis: { kind: 'int', value: -1 } }), rep], {}, { names: ['out'] });
    g.output('out', 'float32', [1, 4, 2, 1]);
    g.output('present.0.key', 'float32', [1, 2, 3, 1]);
    g.output('present.0.value', 'float32', [1, 2, 3, 1]);
    const m = g.toModel();
    m.opsetImport = [{ domain: '', version: 13 }];
    const bytes = onnx.ModelProto.encode(m).finish();
    const logits = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i));
    const values = new Float32Array(6);
    for (const reduction of ['mean', 'max', 'sum'] as const) {
      const s = await ort.InferenceSession.create(exposeAttention(bytes, { groupReduction: reduction }).model);
      const out = await s.run({ logits: new ort.Tensor('float32', logits, [1, 4, 2, 3]), values: new ort.Tensor('float32', values, [1, 2, 3, 1]) });
      // By hand: softmax rows, summed over the 2 queries, then reduced over the 2 query heads of each kv head.
      const perHead: number[][] = [];
      const lastRow: number[][] = [];
      for (let h = 0; h < 4; h++) {
        const sum = [0, 0, 0];
        for (let q = 0; q < 2; q++) {
          const row = [0, 1, 2].map((t) => Math.exp(logits[(h * 2 + q) * 3 + t]!));
          const z = row.reduce((x, y) => x + y, 0);
          row.forEach((e, t) => (sum[t]! += e / z));
          if (q === 1) lastRow.push(row.map((e) => e / z));
        }
        perHead.push(sum);
      }
      const grouped = (rows: number[][]) =>
        Float32Array.from(
          [0, 1].flatMap((kv) =>
            [0, 1, 2].map((t) => {
              const a = rows[kv * 2]![t]!;
              const b = rows[kv * 2 + 1]![t]!;
              return reduction === 'max' ? Math.max(a, b) : reduction === 'sum' ? a + b : (a + b) / 2;
            }),
          ),
        );
      expect(maxAbsDiff(out['attention_sums.0']!.data as Float32Array, grouped(perHead))).toBeLessThan(1e-6);
      expect(maxAbsDiff(out['attention_last.0']!.data as Float32Array, grouped(lastRow))).toBeLessThan(1e-6);
      await s.release();
    }
  });

  it('refuses fused attention with a typed error naming the op and the node', async () => {
    const g = new GraphBuilder('fused');
    g.input('x', 'float32', [1, 4]);
    g.opN('GroupQueryAttention', ['x'], {}, { domain: 'com.microsoft', names: ['present.0.value'] });
    g.output('present.0.value', 'float32', [1, 4]);
    const m = g.toModel();
    m.graph!.node![0]!.name = '/model/layers.0/attn/GroupQueryAttention';
    const err = (() => {
      try {
        exposeAttention(onnx.ModelProto.encode(m).finish());
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(FusedAttentionError);
    expect(err).toMatchObject({ code: 'KVF_MODEL', op: 'com.microsoft.GroupQueryAttention', node: '/model/layers.0/attn/GroupQueryAttention' });
    expect((err as Error).message).toMatch(/window/);
  });

  it('refuses graphs without a cache, with attention_sums already, or that are not ONNX', async () => {
    const native = await readFile(join(dir, 'native', 'onnx', 'model.onnx'));
    expect(() => exposeAttention(native)).toThrow(/already has attention_sums/);
    expect(() => exposeAttention(new Uint8Array([1, 2, 3, 4, 5]))).toThrow(ModelError);
    const g = new GraphBuilder('nocache');
    g.input('x', 'float32', [2]);
    g.opN('Softmax', ['x'], {}, { names: ['y'] });
    g.output('y', 'float32', [2]);
    expect(() => exposeAttention(g.build())).toThrow(/no present/);
    await expect(exposeAttentionFile(join(dir, 'nope.onnx'), join(dir, 'out.onnx'))).rejects.toBeInstanceOf(ModelError);
  });
});
