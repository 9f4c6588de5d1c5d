// Issue 10, item 6: a model config.json cannot make kvfold allocate: every size field is bounded, and the
// layer count is checked against what the checkpoint holds before the tensor list is built.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, ErrorCode, ModelError } from '@kvfold/core';
import { MODEL_LIMITS, loadModel, parseModelConfig, randomWeights, writeCheckpoint } from '@kvfold/runtime';
import { caught, temp } from './helpers.js';

const base = { model_type: 'llama', vocab_size: 258, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 512, kvfold: { tokenizer: 'bytes' } };

describe('item 6: model config bounds', () => {
  it.each([
    ['num_hidden_layers', 3_000_000],
    ['num_attention_heads', 1 << 20],
    ['num_key_value_heads', 1 << 20],
    ['hidden_size', 1 << 30],
    ['intermediate_size', 1 << 30],
    ['vocab_size', 1 << 30],
    ['head_dim', 1 << 20],
    ['max_position_embeddings', 2 ** 40],
  ])('%s = %d is refused with a ConfigError naming the field and the bound', async (field, value) => {
    const e = await caught(() => parseModelConfig({ ...base, [field]: value }));
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).issues).toContainEqual(expect.objectContaining({ path: `/${field}`, rule: 'maximum' }));
    expect(MODEL_LIMITS).toHaveProperty(field === 'num_key_value_heads' ? 'num_attention_heads' : field);
  });

  it('num_hidden_layers: 1000 over a 2-layer checkpoint fails fast with KVF_MODEL, before any tensor list is built', async () => {
    const dir = temp('kvfold-sec-model-');
    const config = parseModelConfig(base);
    await writeCheckpoint(dir, config, randomWeights(config, 1));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...base, num_hidden_layers: 1000 }));
    const t0 = performance.now();
    const e = await caught(() => loadModel(dir, { engine: 'cpu' }));
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(e).toBeInstanceOf(ModelError);
    expect(e.code).toBe(ErrorCode.Model);
    expect(e.details).toMatchObject({ field: 'num_hidden_layers', value: 1000, held: 2 });
  });
});
