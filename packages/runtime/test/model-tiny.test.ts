import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint, Session, generate, loadModel, loadWeights, parseModelConfig, referenceForward } from '../src/index.js';
import { maxAbsDiff, minimalKernels, useEngine } from './helpers/tf.js';

/** The embedded model's folder (written by @kvfold/model-tiny); the test runs once it exists. */
const folder = fileURLToPath(new URL('../../model-tiny/weights/', import.meta.url));
const present = existsSync(`${folder}config.json`);

describe.skipIf(!present)('@kvfold/model-tiny weights', () => {
  beforeAll(async () => {
    expect(await useEngine('cpu')).toBe(true);
  });

  it('loads with the byte tokenizer, decodes like the reference forward, and generates', async () => {
    const model = await loadModel(folder, { kernels: minimalKernels() });
    expect(model.tokenizer.kind).toBe('bytes');
    const prompt = model.tokenizer.encode('The passkey is 4').slice(0, 16);
    const s = new Session(model);
    const logits = await s.prefill(prompt, { logits: 'all' });
    s.dispose();
    const { readFile } = await import('node:fs/promises');
    const config = parseModelConfig(JSON.parse(await readFile(`${folder}config.json`, 'utf8')));
    const ck = await Checkpoint.open(folder);
    const weights = await loadWeights(ck, config).finally(() => ck.close());
    const ref = referenceForward(config, weights, prompt);
    const scale = Math.max(1, ...Array.from(ref.logits, Math.abs));
    expect(maxAbsDiff(logits, ref.logits) / scale).toBeLessThan(1e-4);
    const r = await generate({ model, prompt: 'Hello', maxNewTokens: 8 });
    expect(r.tokens.length).toBeGreaterThan(0);
    expect(r.tokens.length).toBeLessThanOrEqual(8);
    expect(r.tokens.every((t) => Number.isInteger(t) && t >= 0 && t < config.vocabSize)).toBe(true);
    model.dispose();
  });
});
