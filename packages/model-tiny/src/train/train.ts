import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { toHfConfig, type TinyModelConfig } from '../config.js';
import { createRng, type Rng } from '@kvfold/core';
import { pick } from '../data/random.js';
import { MIX_TASKS, mixedTrainingRow } from '../data/mix.js';
import { ANSWER_WEIGHT, trainingRow } from '../data/training.js';
import { copyTrainingRow } from '../data/copy.js';
import { encodeSafetensors } from '@kvfold/runtime';
import { PRESETS, TRAIN_USAGE, trainArgs, type Args } from './args.js';
import { mixAccuracy, passkeyAccuracy, recallAccuracy } from './eval.js';
import { forward, fromVariables, initParams, toVariables, weightedLoss, type Params } from './model.js';
import { readTensors, type NamedTensor } from './tensors.js';
import { loadInitWeights } from './init.js';

/** Length curriculum: short rows first, then mixes that include 2048 so RoPE sees long distances. */
export function lengthFor(step: number, total: number, rng: Rng): number {
  const f = step / total;
  if (f < 0.15) return pick(rng, [128, 128, 256]);
  if (f < 0.35) return pick(rng, [128, 256, 512, 512]);
  if (f < 0.6) return pick(rng, [256, 512, 1024, 2048]);
  if (f < 0.8) return pick(rng, [512, 1024, 2048, 2048]);
  return pick(rng, [256, 512, 1024, 2048, 2048]);
}

function lrAt(step: number, a: Args): number {
  if (step < a.warmup) return (a.lr * (step + 1)) / a.warmup;
  const f = Math.min(1, (step - a.warmup) / Math.max(1, a.steps - a.warmup));
  return a.lr * (0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * f)));
}

interface State {
  step: number;
  tokensSeen: number;
  /** The data stream's state in checkpoints written before the stream was derived per step; unused now. */
  rng?: number[];
  lastLoss: number;
  config: TinyModelConfig;
}

function atomicWrite(path: string, data: Uint8Array | string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

async function main(): Promise<void> {
  let a: Args;
  try {
    a = trainArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`${(e as Error).message}\n${TRAIN_USAGE}`);
    process.exit(2);
  }
  await tf.setBackend('wasm');
  await tf.ready();
  const cfg = PRESETS[a.preset];
  mkdirSync(a.dir, { recursive: true });
  const logPath = resolve(a.dir, 'train.log');
  const log = (s: string) => {
    const line = `${new Date().toISOString()} ${s}`;
    console.log(line);
    appendFileSync(logPath, `${line}\n`);
  };
  const ckptPath = resolve(a.dir, 'latest.safetensors');
  let params: Params;
  const m = new Map<string, tf.Variable>();
  const v = new Map<string, tf.Variable>();
  let st: State;
  if (existsSync(ckptPath)) {
    const { tensors, metadata } = await readTensors(readFileSync(ckptPath), ckptPath);
    st = JSON.parse(metadata.state ?? 'null') as State;
    if (JSON.stringify(st.config) !== JSON.stringify(cfg)) throw new Error(`checkpoint config ${JSON.stringify(st.config)} differs from preset ${a.preset}`);
    const w: Record<string, NamedTensor> = {};
    for (const [name, t] of Object.entries(tensors)) if (!name.startsWith('adam.')) w[name] = t;
    params = toVariables(w);
    for (const name of params.keys()) {
      m.set(name, tf.variable(tf.tensor(tensors[`adam.m.${name}`].data, [...tensors[`adam.m.${name}`].shape]), false));
      v.set(name, tf.variable(tf.tensor(tensors[`adam.v.${name}`].data, [...tensors[`adam.v.${name}`].shape]), false));
    }
    log(`resumed from ${ckptPath} at step ${st.step} (tokens ${st.tokensSeen}, last loss ${st.lastLoss.toFixed(4)}) args=${JSON.stringify({ ...a, stopAfter: String(a.stopAfter) })}`);
  } else {
    // A fine-tune starts from given weights with a fresh optimiser (its moments would belong to another run).
    params = toVariables(a.init ? await loadInitWeights(a.init, cfg, a.preset) : initParams(cfg, a.seed));
    for (const [name, p] of params) {
      m.set(name, tf.variable(tf.zerosLike(p), false));
      v.set(name, tf.variable(tf.zerosLike(p), false));
    }
    st = { step: 0, tokensSeen: 0, lastLoss: NaN, config: cfg };
    const nParams = [...params.values()].reduce((s, p) => s + p.size, 0);
    log(`new run preset=${a.preset} params=${nParams}${a.init ? ` init=${a.init}` : ''} config=${JSON.stringify(cfg)} args=${JSON.stringify({ ...a, stopAfter: String(a.stopAfter) })}`);
  }
  // Each step's data comes from its own stream of core's RNG (seed, step), so a resumed run draws exactly
  // what an uninterrupted one would, with no generator state in the checkpoint.
  const data = createRng(a.seed + 1);

  const save = () => {
    const t: Record<string, NamedTensor> = fromVariables(params);
    const weights: Record<string, NamedTensor> = { ...t };
    for (const [name, x] of m) t[`adam.m.${name}`] = { shape: x.shape.slice(), data: x.dataSync() as Float32Array };
    for (const [name, x] of v) t[`adam.v.${name}`] = { shape: x.shape.slice(), data: x.dataSync() as Float32Array };
    delete st.rng;
    atomicWrite(ckptPath, encodeSafetensors(t, { state: JSON.stringify(st) }));
    if (a.weights) {
      atomicWrite(resolve(a.weights, 'model.safetensors'), encodeSafetensors(weights, { format: 'pt', step: String(st.step), tokens_seen: String(st.tokensSeen) }));
      atomicWrite(resolve(a.weights, 'config.json'), `${JSON.stringify(toHfConfig(cfg, { trained_steps: st.step, tokens_seen: st.tokensSeen }), null, 2)}\n`);
    }
    log(`checkpoint step=${st.step} -> ${ckptPath}${a.weights ? ` and ${a.weights}` : ''}`);
  };

  let stopping = false;
  const onSignal = () => {
    stopping = true;
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  const evalNow = () => {
    const t0 = Date.now();
    const depths = [0, 0.5, 1];
    const res: string[] = [];
    for (const L of [256, 512, 1024, 2048]) {
      const acc = passkeyAccuracy(cfg, params, L, depths, 2, 777, 6);
      res.push(`pk${L}=${(acc.reduce((x, y) => x + y, 0) / acc.length).toFixed(2)}`);
    }
    const rc = recallAccuracy(cfg, params, 512, 4, 6, 555, 6);
    res.push(`recall512x4=${rc.accuracy.toFixed(2)}(chance ${rc.chance})`);
    // Tasks of the mix beyond passkey/recall: 8 held-out samples each at 512 tokens.
    for (const t of MIX_TASKS) if (a.mix && (a.mix[t] ?? 0) > 0 && t !== 'passkey' && t !== 'recall') res.push(`${t}512=${mixAccuracy(cfg, params, t, 512, 8, 333).toFixed(2)}`);
    log(`eval step=${st.step} ${res.join(' ')} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
  };

  const beta1 = 0.9;
  const beta2 = 0.95;
  const wd = 0.01;
  let lastSave = Date.now();
  let stepsThisRun = 0;
  let ema = Number.isFinite(st.lastLoss) ? st.lastLoss : NaN;
  while (st.step < a.steps && !stopping && stepsThisRun < a.stopAfter) {
    // Yield to the event loop so SIGTERM/SIGINT handlers run (the step itself is synchronous).
    await new Promise<void>((r) => setImmediate(r));
    if (stopping) break;
    const t0 = Date.now();
    const rng = data.fork(st.step);
    const L = a.length > 0 ? a.length : a.lengths.length > 0 ? pick(rng, a.lengths) : lengthFor(st.step, a.steps, rng);
    const B = Math.max(1, Math.round(a.tokens / L));
    const rows = Array.from({ length: B }, () => (a.copyShare > 0 && rng.next() < a.copyShare ? copyTrainingRow(rng, L) : a.mix ? mixedTrainingRow(rng, L, a.mix) : trainingRow(rng, L, a.recallShare)));
    const inp = new Int32Array(B * L);
    const tgt = new Int32Array(B * L);
    const wts = new Float32Array(B * L);
    rows.forEach((r, b) => {
      inp.set(r.ids.subarray(0, L), b * L);
      tgt.set(r.ids.subarray(1), b * L);
      wts.set(r.weights, b * L);
    });
    const lr = lrAt(st.step, a);
    const stepT = st.step + 1;
    // Micro-batches bound the T x T attention buffers (wasm memory is limited to a few GiB).
    const micro = Math.max(1, Math.min(B, Math.floor((1024 * 1024 * 2) / (L * L))));
    let wsum = 0;
    for (let i = 0; i < wts.length; i++) wsum += wts[i];
    let lossSum = 0;
    let ansLossSum = 0;
    let ansCount = 0;
    const acc = new Map<string, tf.Tensor>();
    for (let b0 = 0; b0 < B; b0 += micro) {
      const nb = Math.min(micro, B - b0);
      const out = tf.tidy(() => {
        const x = tf.tensor2d(inp.subarray(b0 * L, (b0 + nb) * L), [nb, L], 'int32');
        const y = tf.tensor2d(tgt.subarray(b0 * L, (b0 + nb) * L), [nb, L], 'int32');
        const w = tf.tensor2d(wts.subarray(b0 * L, (b0 + nb) * L), [nb, L], 'float32');
        const isAns = tf.cast(tf.greaterEqual(tf.reshape(w, [-1]), ANSWER_WEIGHT), 'float32');
        let ansSum = 0;
        const { value, grads } = tf.variableGrads(
          () =>
            weightedLoss(forward(cfg, params, x), y, w, wsum, (nll) => {
              ansSum = tf.sum(tf.mul(nll, isAns)).dataSync()[0];
            }),
          [...params.values()],
        );
        ansLossSum += ansSum;
        ansCount += isAns.sum().dataSync()[0];
        for (const [name, p] of params) {
          const prev = acc.get(name);
          const next = prev ? tf.add(prev, grads[p.name]) : grads[p.name];
          if (prev) prev.dispose();
          acc.set(name, tf.keep(next));
        }
        return value.dataSync()[0];
      });
      lossSum += out;
    }
    const lossVal = tf.tidy(() => {
      const grads = acc;
      const gn = tf.sqrt(tf.addN([...grads.values()].map((g) => tf.sum(tf.square(g)))));
      const clip = tf.minimum(1, tf.div(1.0, tf.add(gn, 1e-6)));
      const bc1 = 1 - Math.pow(beta1, stepT);
      const bc2 = 1 - Math.pow(beta2, stepT);
      for (const [name, p] of params) {
        const g = tf.mul(grads.get(name) as tf.Tensor, clip);
        const mi = m.get(name) as tf.Variable;
        const vi = v.get(name) as tf.Variable;
        mi.assign(tf.add(tf.mul(mi, beta1), tf.mul(g, 1 - beta1)));
        vi.assign(tf.add(tf.mul(vi, beta2), tf.mul(tf.square(g), 1 - beta2)));
        const upd = tf.div(tf.div(mi, bc1), tf.add(tf.sqrt(tf.div(vi, bc2)), 1e-8));
        const decay = p.shape.length > 1 ? tf.mul(p, lr * wd) : tf.scalar(0);
        p.assign(tf.sub(p, tf.add(tf.mul(upd, lr), decay)));
      }
      return [lossSum, gn.dataSync()[0]];
    });
    for (const g of acc.values()) g.dispose();
    st.step++;
    stepsThisRun++;
    st.tokensSeen += B * L;
    st.lastLoss = lossVal[0];
    ema = Number.isFinite(ema) ? 0.95 * ema + 0.05 * lossVal[0] : lossVal[0];
    const dt = (Date.now() - t0) / 1000;
    if (!Number.isFinite(lossVal[0])) throw new Error(`loss is ${lossVal[0]} at step ${st.step}`);
    log(`step=${st.step} L=${L} B=${B} loss=${lossVal[0].toFixed(4)} ema=${ema.toFixed(4)} ans=${(ansLossSum / Math.max(1, ansCount)).toFixed(3)} gnorm=${lossVal[1].toFixed(3)} lr=${lr.toExponential(2)} s/step=${dt.toFixed(2)} tok/s=${Math.round((B * L) / dt)} tokens=${st.tokensSeen} tensors=${tf.memory().numTensors}`);
    if (st.step % a.evalEvery === 0) evalNow();
    if (Date.now() - lastSave > a.ckptSec * 1000) {
      save();
      lastSave = Date.now();
    }
  }
  save();
  if (st.step >= a.steps) {
    evalNow();
    log(`finished ${st.step} steps`);
  } else log(`stopped at step ${st.step}${stopping ? ' (signal)' : ''}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
