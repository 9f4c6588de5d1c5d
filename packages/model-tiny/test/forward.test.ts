import { describe, it, expect } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import type { TinyModelConfig } from '../src/index.js';
import { forward, initParams, mm, toVariables } from '../src/train/model.js';
import type { NamedTensor } from '../src/train/tensors.js';

const cfg: TinyModelConfig = { vocabSize: 258, hidden: 8, intermediate: 12, layers: 2, heads: 4, kvHeads: 2, headDim: 4, ropeTheta: 10000, rmsNormEps: 1e-5, maxPositions: 64 };

/** Plain-loop Llama forward written from the HF definitions, as an independent check of the tfjs one. */
function naiveForward(w: Record<string, NamedTensor>, ids: number[]): number[][] {
  const { hidden: d, heads: H, kvHeads: K, headDim: D, intermediate: F } = cfg;
  const mat = (name: string) => w[name];
  const lin = (x: number[], name: string) => {
    const t = mat(name);
    const [out, inp] = t.shape;
    return Array.from({ length: out }, (_, o) => x.reduce((s, xi, i) => s + xi * t.data[o * inp + i], 0));
  };
  const norm = (x: number[], name: string) => {
    const ms = x.reduce((s, v) => s + v * v, 0) / x.length;
    return x.map((v, i) => (v / Math.sqrt(ms + cfg.rmsNormEps)) * mat(name).data[i]);
  };
  const rope = (v: number[], pos: number) => {
    const half = D / 2;
    return v.map((x, i) => {
      const f = i % half;
      const ang = pos / Math.pow(cfg.ropeTheta, (2 * f) / D);
      const rot = i < half ? -v[i + half] : v[i - half];
      return x * Math.cos(ang) + rot * Math.sin(ang);
    });
  };
  let xs = ids.map((id) => Array.from(mat('model.embed_tokens.weight').data.slice(id * d, (id + 1) * d)));
  for (let l = 0; l < cfg.layers; l++) {
    const p = `model.layers.${l}.`;
    const hs = xs.map((x) => norm(x, `${p}input_layernorm.weight`));
    const qs = hs.map((h) => lin(h, `${p}self_attn.q_proj.weight`));
    const ks = hs.map((h) => lin(h, `${p}self_attn.k_proj.weight`));
    const vs = hs.map((h) => lin(h, `${p}self_attn.v_proj.weight`));
    xs = xs.map((x, t) => {
      const o: number[] = [];
      for (let h = 0; h < H; h++) {
        const kv = Math.floor(h / (H / K));
        const q = rope(qs[t].slice(h * D, (h + 1) * D), t);
        const sc = Array.from({ length: t + 1 }, (_, j) => rope(ks[j].slice(kv * D, (kv + 1) * D), j).reduce((s, kj, i) => s + kj * q[i], 0) / Math.sqrt(D));
        const mx = Math.max(...sc);
        const e = sc.map((s) => Math.exp(s - mx));
        const z = e.reduce((a, b) => a + b, 0);
        for (let i = 0; i < D; i++) o.push(e.reduce((s, ej, j) => s + (ej / z) * vs[j][kv * D + i], 0));
      }
      return lin(o, `${p}self_attn.o_proj.weight`).map((v, i) => v + x[i]);
    });
    xs = xs.map((x) => {
      const h = norm(x, `${p}post_attention_layernorm.weight`);
      const g = lin(h, `${p}mlp.gate_proj.weight`);
      const u = lin(h, `${p}mlp.up_proj.weight`);
      const a = g.map((gi, i) => (gi / (1 + Math.exp(-gi))) * u[i]);
      expect(a.length).toBe(F);
      return lin(a, `${p}mlp.down_proj.weight`).map((v, i) => v + x[i]);
    });
  }
  return xs.map((x) => lin(norm(x, 'model.norm.weight'), 'model.embed_tokens.weight'));
}

describe('training forward pass', () => {
  it('matches a plain-loop HF Llama (rotate-half RoPE, GQA head mapping, SwiGLU, tied head)', async () => {
    await tf.setBackend('cpu');
    // Larger-than-init weights so attention is far from uniform and mapping mistakes show.
    const w = initParams(cfg, 5);
    for (const t of Object.values(w)) if (t.shape.length === 2) for (let i = 0; i < t.data.length; i++) t.data[i] *= 25;
    const ids = [256, 72, 101, 108, 108, 111, 33];
    const want = naiveForward(w, ids);
    const p = toVariables(w);
    const got = tf.tidy(() => forward(cfg, p, tf.tensor2d([ids], [1, ids.length], 'int32')).arraySync()[0]);
    for (const v of p.values()) v.dispose();
    let maxErr = 0;
    for (let t = 0; t < ids.length; t++) for (let k = 0; k < cfg.vocabSize; k++) maxErr = Math.max(maxErr, Math.abs(got[t][k] - want[t][k]));
    const scale = Math.max(...want.flat().map(Math.abs));
    expect(scale).toBeGreaterThan(0.1);
    expect(maxErr / scale).toBeLessThan(1e-4);
  });
});

describe('matmul with explicit-transpose gradient', () => {
  it('gives the same value and gradients as tf.matMul (2-D and batched 3-D)', async () => {
    await tf.setBackend('cpu');
    for (const [sa, sb] of [
      [[5, 3], [3, 4]],
      [[2, 5, 3], [2, 3, 4]],
    ] as const) {
      const a = tf.randomNormal([...sa], 0, 1, 'float32', 1);
      const b = tf.randomNormal([...sb], 0, 1, 'float32', 2);
      const w = tf.randomNormal([...sa.slice(0, -1), sb[sb.length - 1]], 0, 1, 'float32', 3);
      // A weighted sum makes every output element's gradient distinct.
      const lossOf = (f: (x: tf.Tensor, y: tf.Tensor) => tf.Tensor) => (x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(f(x, y), w));
      const [ga, gb] = tf.grads(lossOf(mm))([a, b]);
      const [ra, rb] = tf.grads(lossOf((x, y) => tf.matMul(x as tf.Tensor3D, y as tf.Tensor3D)))([a, b]);
      const close = (x: tf.Tensor, y: tf.Tensor) => tf.max(tf.abs(tf.sub(x, y))).dataSync()[0];
      expect(close(mm(a, b), tf.matMul(a as tf.Tensor3D, b as tf.Tensor3D))).toBeLessThan(1e-5);
      expect(ga.shape).toEqual([...sa]);
      expect(gb.shape).toEqual([...sb]);
      expect(close(ga, ra)).toBeLessThan(1e-5);
      expect(close(gb, rb)).toBeLessThan(1e-5);
      expect(tf.max(tf.abs(ga)).dataSync()[0]).toBeGreaterThan(0.1);
    }
  });
});
