import { describe, it, expect } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Checkpoint, loadWeights, parseModelConfig, referenceForward } from '@kvfold/runtime';
import { encodeBytes, modelTinyPath, SPECIAL_TOKENS, type TinyModelConfig } from '../src/index.js';
import { forward, toVariables } from '../src/train/model.js';
import { readTensors } from '../src/train/tensors.js';

// The exported folder is the contract with @kvfold/runtime: its plain-loop reference forward must
// give the logits the training forward gives on the same weights.
describe.skipIf(!existsSync(resolve(modelTinyPath, 'model.safetensors')))('bundled weights load in @kvfold/runtime', () => {
  it('runtime referenceForward logits match the training forward', async () => {
    await tf.setBackend('cpu');
    const json = JSON.parse(readFileSync(resolve(modelTinyPath, 'config.json'), 'utf8')) as Record<string, number>;
    const config = parseModelConfig(json);
    const weights = await loadWeights(await Checkpoint.open(modelTinyPath), config);
    const tokens = [SPECIAL_TOKENS.bos, ...encodeBytes('The pass key is 12345. Remember it.')];
    const ref = referenceForward(config, weights, tokens);
    const cfg: TinyModelConfig = {
      vocabSize: json.vocab_size, hidden: json.hidden_size, intermediate: json.intermediate_size, layers: json.num_hidden_layers,
      heads: json.num_attention_heads, kvHeads: json.num_key_value_heads, headDim: json.head_dim, ropeTheta: json.rope_theta,
      rmsNormEps: json.rms_norm_eps, maxPositions: json.max_position_embeddings,
    };
    const file = resolve(modelTinyPath, 'model.safetensors');
    const p = toVariables((await readTensors(readFileSync(file), file)).tensors);
    const ours = tf.tidy(() => forward(cfg, p, tf.tensor2d([tokens], [1, tokens.length], 'int32')).dataSync() as Float32Array);
    for (const v of p.values()) v.dispose();
    let maxErr = 0;
    let scale = 0;
    for (let i = 0; i < ours.length; i++) {
      maxErr = Math.max(maxErr, Math.abs(ours[i] - ref.logits[i]));
      scale = Math.max(scale, Math.abs(ref.logits[i]));
    }
    expect(ref.logits.length).toBe(ours.length);
    expect(maxErr / scale).toBeLessThan(1e-4);
  });
});
