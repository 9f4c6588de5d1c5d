import { mkdtemp, readFile, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ModelError } from '@kvfold/core';
import {
  Checkpoint,
  Session,
  configToJson,
  encodeSafetensors,
  loadModel,
  loadWeights,
  randomWeights,
  referenceForward,
  weightsToTensors,
  writeCheckpoint,
  type LlamaConfig,
  type LlamaWeights,
} from '../src/index.js';
import { tinyConfig } from './helpers/models.js';
import { maxAbsDiff, minimalKernels, useEngine } from './helpers/tf.js';

let root: string;
let counter = 0;
const dir = () => join(root, `m${counter++}`);

beforeAll(async () => {
  expect(await useEngine('cpu')).toBe(true);
  root = await mkdtemp(join(tmpdir(), 'kvfold-runtime-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function flat(w: LlamaWeights, config: LlamaConfig): Float32Array[] {
  return [...weightsToTensors(w, config).values()].map((t) => t.data);
}

async function load(folder: string, config: LlamaConfig): Promise<LlamaWeights> {
  const ck = await Checkpoint.open(folder);
  try {
    return await loadWeights(ck, config);
  } finally {
    await ck.close();
  }
}

/** Write config.json plus a single safetensors file of arbitrary tensors. */
async function writeRaw(folder: string, config: LlamaConfig, tensors: Map<string, { shape: readonly number[]; data: ArrayLike<number> }>): Promise<void> {
  const { mkdir } = await import('node:fs/promises');
  await mkdir(folder, { recursive: true });
  await writeFile(join(folder, 'config.json'), JSON.stringify(configToJson(config)));
  await writeFile(join(folder, 'model.safetensors'), encodeSafetensors(Object.fromEntries(tensors)));
}

async function rejection(p: Promise<unknown>): Promise<ModelError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ModelError);
    return e as ModelError;
  }
  throw new Error('expected a ModelError');
}

describe('checkpoints', () => {
  const config = tinyConfig();
  const weights = randomWeights(config, 4);

  it('loads a single-file F32 checkpoint exactly', async () => {
    const f = dir();
    await writeCheckpoint(f, config, weights);
    const got = await load(f, config);
    const want = flat(weights, config);
    flat(got, config).forEach((d, i) => expect(Array.from(d)).toEqual(Array.from(want[i]!)));
  });

  it.each([
    ['F16', 3, 2 ** -11],
    ['BF16', 4, 2 ** -8],
    ['F32', 5, 0],
  ] as const)('loads a sharded %s checkpoint (%i shards) within its rounding', async (dtype, shards, rel) => {
    const f = dir();
    await writeCheckpoint(f, config, weights, { dtype, shards });
    const files = (await readdir(f)).sort();
    expect(files.filter((n) => n.endsWith('.safetensors'))).toHaveLength(shards);
    expect(files).toContain('model.safetensors.index.json');
    const got = flat(await load(f, config), config);
    const want = flat(weights, config);
    got.forEach((d, i) => {
      for (let j = 0; j < d.length; j++) expect(Math.abs(d[j]! - want[i]![j]!)).toBeLessThanOrEqual(Math.abs(want[i]![j]!) * rel + 1e-7);
    });
  });

  it('loads tied embeddings and qwen2 biases', async () => {
    const tied = tinyConfig({ tie_word_embeddings: true });
    const f1 = dir();
    await writeCheckpoint(f1, tied, randomWeights(tied, 2));
    const w1 = await load(f1, tied);
    expect(w1.lmHead).toBe(w1.embed);
    const qwen = tinyConfig({ model_type: 'qwen2' });
    const f2 = dir();
    const wq = randomWeights(qwen, 3);
    await writeCheckpoint(f2, qwen, wq);
    const w2 = await load(f2, qwen);
    expect(Array.from(w2.layers[1]!.k.bias!.data)).toEqual(Array.from(wq.layers[1]!.k.bias!.data));
    expect(w2.layers[0]!.o.bias).toBeUndefined();
  });

  it('names a missing tensor', async () => {
    const f = dir();
    const tensors = weightsToTensors(weights, config);
    tensors.delete('model.layers.1.mlp.up_proj.weight');
    await writeRaw(f, config, tensors);
    const e = await rejection(load(f, config));
    expect(e.details).toMatchObject({ tensor: 'model.layers.1.mlp.up_proj.weight', reason: 'missing' });
    expect(e.message).toContain('model.layers.1.mlp.up_proj.weight');
    // qwen2 requires q/k/v biases; a llama checkpoint lacks them.
    await expect(load(f, tinyConfig({ model_type: 'qwen2' }))).rejects.toMatchObject({ details: { tensor: 'model.layers.0.self_attn.q_proj.bias' } });
    // Untied models need lm_head.
    const f2 = dir();
    const t2 = weightsToTensors(weights, config);
    t2.delete('lm_head.weight');
    await writeRaw(f2, config, t2);
    expect((await rejection(load(f2, config))).details).toMatchObject({ tensor: 'lm_head.weight' });
  });

  it('names a tensor whose shape disagrees with the config', async () => {
    const f = dir();
    const tensors = weightsToTensors(weights, config);
    tensors.set('model.layers.0.self_attn.k_proj.weight', { shape: [32, 32], data: new Float32Array(32 * 32) });
    await writeRaw(f, config, tensors);
    const e = await rejection(load(f, config));
    expect(e.details).toMatchObject({ tensor: 'model.layers.0.self_attn.k_proj.weight', reason: 'shape', expected: [16, 32], shape: [32, 32] });
  });

  it('names the tensor of a truncated file', async () => {
    const f = dir();
    await writeCheckpoint(f, config, weights);
    const file = join(f, 'model.safetensors');
    const size = (await readFile(file)).length;
    await truncate(file, size - 10);
    const e = await rejection(Checkpoint.open(f));
    expect(e.details).toMatchObject({ reason: 'truncated', tensor: 'lm_head.weight' });
    await truncate(file, 20);
    expect((await rejection(Checkpoint.open(f))).details).toMatchObject({ reason: 'truncated' });
  });

  it('names the tensor with an unknown dtype', async () => {
    const f = dir();
    await writeCheckpoint(f, config, weights);
    const file = join(f, 'model.safetensors');
    const bytes = await readFile(file);
    const text = bytes.toString('latin1');
    const at = text.indexOf('"F32"', text.indexOf('model.norm.weight'));
    bytes.write('"X32"', at, 'latin1');
    await writeFile(file, bytes);
    const e = await rejection(Checkpoint.open(f));
    expect(e.details).toMatchObject({ tensor: 'model.norm.weight', reason: 'dtype' });
  });

  it('names missing shards, tensors absent from their shard, and non-finite weights', async () => {
    const f = dir();
    await writeCheckpoint(f, config, weights, { shards: 2 });
    const indexPath = join(f, 'model.safetensors.index.json');
    const index = JSON.parse(await readFile(indexPath, 'utf8')) as { weight_map: Record<string, string> };
    const first = index.weight_map['model.embed_tokens.weight']!;
    const other = Object.values(index.weight_map).find((v) => v !== first)!;
    await writeFile(indexPath, JSON.stringify({ weight_map: { ...index.weight_map, 'model.embed_tokens.weight': other } }));
    expect((await rejection(Checkpoint.open(f))).details).toMatchObject({ tensor: 'model.embed_tokens.weight', reason: 'missing' });
    await writeFile(indexPath, JSON.stringify({ weight_map: { ...index.weight_map, 'model.norm.weight': 'gone.safetensors' } }));
    expect((await rejection(Checkpoint.open(f))).details).toMatchObject({ tensor: 'model.norm.weight', reason: 'missing' });
    await writeFile(indexPath, JSON.stringify({ weight_map: { 'model.norm.weight': '../escape.safetensors' } }));
    expect((await rejection(Checkpoint.open(f))).details).toMatchObject({ tensor: 'model.norm.weight' });
    await writeFile(indexPath, '{ nope');
    expect((await rejection(Checkpoint.open(f))).details).toMatchObject({ reason: 'header' });

    const g = dir();
    const tensors = weightsToTensors(weights, config);
    const bad = Float32Array.from(tensors.get('model.norm.weight')!.data);
    bad[3] = NaN;
    tensors.set('model.norm.weight', { shape: [32], data: bad });
    await writeRaw(g, config, tensors);
    expect((await rejection(load(g, config))).details).toMatchObject({ tensor: 'model.norm.weight', reason: 'non-finite' });

    expect((await rejection(Checkpoint.open(join(root, 'does-not-exist')))).details).toMatchObject({ reason: 'missing' });
  });

  it('loadModel: config errors are ConfigErrors naming the field; a good folder decodes like the reference', async () => {
    const f = dir();
    await writeCheckpoint(f, config, weights, { shards: 2, dtype: 'F32' });
    const model = await loadModel(f, { kernels: minimalKernels() });
    expect(model.config).toEqual(config);
    expect(model.tokenizer.kind).toBe('bytes');
    const s = new Session(model);
    const logits = await s.prefill([1, 2, 3, 4, 5], { logits: 'all' });
    expect(maxAbsDiff(logits, referenceForward(config, weights, [1, 2, 3, 4, 5]).logits)).toBeLessThan(1e-4);
    s.dispose();
    model.dispose();

    await writeFile(join(f, 'config.json'), JSON.stringify({ ...configToJson(config), num_hidden_layers: 'two' }));
    await expect(loadModel(f, { kernels: minimalKernels() })).rejects.toSatisfy((e: unknown) => e instanceof ConfigError && e.issues[0]!.path === '/num_hidden_layers');
    await writeFile(join(f, 'config.json'), JSON.stringify({ ...configToJson(config), num_hidden_layers: 3 }));
    // More layers than the checkpoint holds: refused before the tensor list is built.
    await expect(loadModel(f, { kernels: minimalKernels() })).rejects.toMatchObject({ details: { field: 'num_hidden_layers', value: 3, held: 2, reason: 'shape' } });
    await writeFile(join(f, 'config.json'), '{');
    await expect(loadModel(f, { kernels: minimalKernels() })).rejects.toBeInstanceOf(ModelError);
  });
});
