import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { fromHfConfig as fromHf } from '../config.js';
import { renderCard } from './card.js';
import { passkeyAccuracy, recallAccuracy } from './eval.js';
import { toVariables } from './model.js';
import { readTensors } from './tensors.js';

/**
 * Full-cache evaluation of an exported weights folder: passkey accuracy over lengths x depths and
 * associative recall vs chance. Writes eval.json next to the weights.
 * Usage: node build-train/train/evaluate.js [--weights DIR] [--n 20] [--lengths 256,512,1024,2048]
 */
async function main(): Promise<void> {
  const pkg = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
  const { values } = parseArgs({ strict: true, allowPositionals: false, options: { weights: { type: 'string' }, n: { type: 'string', default: '20' }, lengths: { type: 'string', default: '256,512,1024,2048' } } });
  const dir = resolve(values.weights ?? resolve(pkg, 'weights'));
  const count = (flag: string, text: string): number => {
    if (!/^\d+$/.test(text) || Number(text) < 1) throw new Error(`--${flag} ${JSON.stringify(text)} must be an integer >= 1`);
    return Number(text);
  };
  const n = count('n', values.n);
  const lengths = values.lengths.split(',').map((x) => count('lengths', x));
  const depths = [0, 0.25, 0.5, 0.75, 1];
  await tf.setBackend('wasm');
  await tf.ready();
  const cfg = fromHf(JSON.parse(readFileSync(resolve(dir, 'config.json'), 'utf8')) as Record<string, number>);
  const file = resolve(dir, 'model.safetensors');
  const { tensors, metadata } = await readTensors(readFileSync(file), file);
  const params = toVariables(tensors);
  const t0 = Date.now();
  const passkey: Record<string, number[]> = {};
  for (const L of lengths) {
    passkey[L] = passkeyAccuracy(cfg, params, L, depths, n, 424242, 8);
    console.log(`passkey L=${L} depths=${depths.join(',')} acc=${passkey[L].map((x) => x.toFixed(2)).join(' ')}`);
  }
  const recall: Record<string, { accuracy: number; chance: number }> = {};
  for (const L of lengths.filter((l) => l <= 1024)) {
    for (const pairs of [2, 4]) {
      recall[`${L}x${pairs}`] = recallAccuracy(cfg, params, L, pairs, n * 2, 9090, 8);
      console.log(`recall L=${L} pairs=${pairs} acc=${recall[`${L}x${pairs}`].accuracy.toFixed(2)} chance=${1 / pairs}`);
    }
  }
  const out = { step: Number(metadata.step ?? NaN), tokensSeen: Number(metadata.tokens_seen ?? NaN), samplesPerCell: n, depths, passkey, recall, seconds: (Date.now() - t0) / 1000 };
  writeFileSync(resolve(dir, 'eval.json'), `${JSON.stringify(out, null, 2)}\n`);
  const config = JSON.parse(readFileSync(resolve(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(resolve(dir, 'MODEL_CARD.md'), renderCard(config, out, resolve(pkg, 'checkpoints', 'train.log')));
  console.log(JSON.stringify(out));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
