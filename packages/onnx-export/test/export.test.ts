import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { ConfigError, ModelError, SPECIFICATION_VERSION, hostLayer, hostTensor, type HostLayer, type HostTensor, type KVCachePolicy, type LayerCache, type Observation, type PolicyContext } from '@kvfold/core';
import { modelTinyPath, passkeySample } from '@kvfold/model-tiny';
import {
  Checkpoint,
  Session,
  byteTokenizer,
  huggingFaceTokenizer,
  loadModel,
  loadWeights,
  parseModelConfig,
  randomWeights,
  referenceForward,
  writeCheckpoint,
  type LlamaConfig,
  type LlamaWeights,
  type Model,
} from '@kvfold/runtime';
import { byteTokenizerFiles, exportOnnx } from '../src/index.js';

/** Feeds of one decoder call: `ids` at `positions` over `past` (per layer keys/values `[kvHeads, L, headDim]`). */
function feeds(config: LlamaConfig, ids: readonly number[], positions: readonly number[], past?: readonly HostLayer[], logCounts?: readonly Float32Array[]): Record<string, ort.Tensor> {
  const n = ids.length;
  const L = past ? past[0]!.keys.shape[1]! : 0;
  const f: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, n]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(L + n).fill(1n), [1, L + n]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from(positions, BigInt), [1, n]),
    num_logits_to_keep: new ort.Tensor('int64', BigInt64Array.from([0n]), []),
  };
  for (let i = 0; i < config.layers; i++) {
    f[`past_key_values.${i}.key`] = new ort.Tensor('float32', past ? past[i]!.keys.data : new Float32Array(0), [1, config.kvHeads, L, config.headDim]);
    f[`past_key_values.${i}.value`] = new ort.Tensor('float32', past ? past[i]!.values.data : new Float32Array(0), [1, config.kvHeads, L, config.headDim]);
    if (logCounts) f[`past_log_counts.${i}`] = new ort.Tensor('float32', logCounts[i]!, [1, config.kvHeads, L]);
  }
  return f;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Records each call's queries and attention, as the runtime hands them to a policy, and keeps the cache. */
class QueryRecorder implements KVCachePolicy {
  readonly specificationVersion = SPECIFICATION_VERSION;
  readonly name = 'test-recorder';
  readonly needs = ['attention', 'lastAttention', 'queries'] as const;
  readonly calls: { queries: HostTensor; attention: HostTensor; last: HostTensor }[][] = [];
  async prefill<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    const k = ctx.kernels;
    (this.calls[ctx.step] ??= [])[ctx.layerIndex] = { queries: await k.toHost(observed.queries!), attention: await k.toHost(observed.attention!), last: await k.toHost(observed.lastAttention!) };
    return layer;
  }
  step<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    return this.prefill(layer, observed, ctx);
  }
}

describe('exportOnnx on the embedded model', () => {
  let dir: string;
  let config: LlamaConfig;
  let weights: LlamaWeights;
  let session: ort.InferenceSession;
  let model: Model;
  const sample = passkeySample({ length: 200, depth: 0.4, seed: 3 });
  const tokenizer = byteTokenizer({ bosTokenId: 256 });
  const ids = tokenizer.encode(sample.prompt);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kvfold-export-'));
    const res = await exportOnnx(modelTinyPath, join(dir, 'tiny'), { proportional: true });
    config = res.config;
    const ck = await Checkpoint.open(modelTinyPath);
    weights = await loadWeights(ck, config);
    await ck.close();
    session = await ort.InferenceSession.create(join(dir, 'tiny', 'onnx', 'model.onnx'));
    model = await loadModel(modelTinyPath, { engine: 'cpu' });
  });
  afterAll(async () => {
    model?.dispose();
    await session?.release();
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the transformers.js folder layout with the HF cache interface', async () => {
    expect(session.inputNames).toEqual(['input_ids', 'attention_mask', 'position_ids', 'num_logits_to_keep', ...Array.from({ length: 3 }, (_, i) => [`past_key_values.${i}.key`, `past_key_values.${i}.value`]).flat()]);
    expect(session.outputNames).toEqual(['logits', ...[0, 1, 2].flatMap((i) => [`present.${i}.key`, `present.${i}.value`]), 'attention_sums.0', 'attention_sums.1', 'attention_sums.2', 'attention_last.0', 'attention_last.1', 'attention_last.2']);
    const cfg = JSON.parse(await readFile(join(dir, 'tiny', 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg.model_type).toBe('llama');
    expect(cfg['transformers.js_config']).toEqual({ dtype: 'fp32' });
    for (const f of ['generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'onnx/model_proportional.onnx']) await stat(join(dir, 'tiny', f));
  });

  it('gives the tfjs runtime\'s logits within 1e-4 on every prompt token', async () => {
    const s = new Session(model);
    const tfjs = await s.feed(ids, { logits: 'all' });
    s.dispose();
    const out = await session.run(feeds(config, ids, ids.map((_, i) => i)));
    expect(out.logits!.dims).toEqual([1, ids.length, config.vocabSize]);
    expect(maxAbsDiff(out.logits!.data as Float32Array, tfjs)).toBeLessThan(1e-4);
  });

  it('attention_sums equal the observe kernel\'s sums within 1e-5, at the prompt and at a decode step over a past', async () => {
    const recorder = new QueryRecorder();
    const s = new Session(model, { policy: recorder, guard: false });
    const more = tokenizer.encode(' What is the pass').slice(1);
    await s.feed(ids);
    await s.feed(more);
    s.dispose();
    const kernels = createReferenceKernels();
    const prompt = await session.run(feeds(config, ids, ids.map((_, i) => i)));
    const layers: HostLayer[] = [];
    for (let li = 0; li < config.layers; li++) {
      const keys = prompt[`present.${li}.key`]!.data as Float32Array;
      layers.push(hostLayer({ heads: config.kvHeads, length: ids.length, headDim: config.headDim, keys, values: prompt[`present.${li}.value`]!.data as Float32Array }));
      const positions = hostTensor('int32', [ids.length], ids.map((_, i) => i));
      const observed = kernels.observe(layers[li]!, recorder.calls[0]![li]!.queries, positions);
      expect(maxAbsDiff(prompt[`attention_sums.${li}`]!.data as Float32Array, observed.attention.data)).toBeLessThan(1e-5);
      expect(maxAbsDiff(prompt[`attention_last.${li}`]!.data as Float32Array, observed.lastAttention.data)).toBeLessThan(1e-5);
    }
    const step = await session.run(feeds(config, more, more.map((_, i) => ids.length + i), layers));
    for (let li = 0; li < config.layers; li++) {
      const T = ids.length + more.length;
      const layer = hostLayer({ heads: config.kvHeads, length: T, headDim: config.headDim, keys: step[`present.${li}.key`]!.data as Float32Array, values: step[`present.${li}.value`]!.data as Float32Array });
      const qpos = hostTensor('int32', [more.length], more.map((_, i) => ids.length + i));
      const observed = kernels.observe(layer, recorder.calls[1]![li]!.queries, qpos);
      expect(step[`attention_sums.${li}`]!.dims).toEqual([1, config.kvHeads, T]);
      expect(maxAbsDiff(step[`attention_sums.${li}`]!.data as Float32Array, observed.attention.data)).toBeLessThan(1e-5);
      expect(maxAbsDiff(step[`attention_last.${li}`]!.data as Float32Array, observed.lastAttention.data)).toBeLessThan(1e-5);
      // The runtime's own observation of the same call agrees too.
      expect(maxAbsDiff(step[`attention_sums.${li}`]!.data as Float32Array, recorder.calls[1]![li]!.attention.data)).toBeLessThan(1e-5);
      expect(maxAbsDiff(step[`attention_last.${li}`]!.data as Float32Array, recorder.calls[1]![li]!.last.data)).toBeLessThan(1e-5);
    }
  });

  it('past_log_counts adds log(count) to merged slots like the runtime\'s proportional attention', async () => {
    const prop = await ort.InferenceSession.create(join(dir, 'tiny', 'onnx', 'model_proportional.onnx'));
    const head = ids.slice(0, 40);
    const ref = referenceForward(config, weights, head);
    // Pretend some slots stand for several tokens: counts 1..4 by slot, positions as they are.
    const caches = ref.caches.map((c) => ({ ...c, counts: hostTensor('int32', c.counts.shape, Array.from(c.counts.data, (_, i) => 1 + (i % 4))) }));
    const logCounts = caches.map((c) => Float32Array.from(c.counts.data, (x) => Math.log(x)));
    const next = [80, 81, 82];
    const positions = next.map((_, i) => head.length + i);
    const expected = referenceForward(config, weights, next, { caches, positions, proportional: true });
    const out = await prop.run(feeds(config, next, positions, caches, logCounts));
    expect(maxAbsDiff(out.logits!.data as Float32Array, expected.logits)).toBeLessThan(1e-4);
    // Without the counts the logits differ: the input really is used.
    const plain = referenceForward(config, weights, next, { caches, positions });
    expect(maxAbsDiff(plain.logits, expected.logits)).toBeGreaterThan(1e-3);
    await prop.release();
  });

  it('writes a tokenizer.json that encodes and decodes exactly as the byte tokenizer', async () => {
    const tj = JSON.parse(await readFile(join(dir, 'tiny', 'tokenizer.json'), 'utf8')) as object;
    const tc = JSON.parse(await readFile(join(dir, 'tiny', 'tokenizer_config.json'), 'utf8')) as object;
    const hf = huggingFaceTokenizer(tj, tc);
    for (const text of ['The pass key is 12345.', '  two  spaces\tand tab\n', 'ünïcödé ✓ 漢字 😀', sample.prompt]) {
      expect(hf.encode(text)).toEqual(tokenizer.encode(text));
      expect(hf.decode(tokenizer.encode(text))).toBe(text);
    }
    expect(hf.eosTokenIds).toContain(257);
  });
});

describe('exportOnnx on other architectures and options', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kvfold-export-arch-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const archs: [string, Record<string, unknown>][] = [
    ['qwen2 (q/k/v biases, untied head, GQA 3:1)', { model_type: 'qwen2', num_attention_heads: 6, num_key_value_heads: 2, tie_word_embeddings: false }],
    ['mistral (sliding window 6)', { model_type: 'mistral', num_attention_heads: 4, num_key_value_heads: 4, sliding_window: 6 }],
    ['llama (llama3 rope scaling)', { model_type: 'llama', num_attention_heads: 4, num_key_value_heads: 1, rope_scaling: { rope_type: 'llama3', factor: 8, original_max_position_embeddings: 16 } }],
  ];
  for (const [name, overrides] of archs) {
    it(`${name}: logits equal the reference forward pass`, async () => {
      const config = parseModelConfig({ vocab_size: 50, hidden_size: 24, intermediate_size: 40, num_hidden_layers: 2, head_dim: 8, max_position_embeddings: 64, eos_token_id: 2, ...overrides });
      const weights = randomWeights(config, 7, 0.3);
      const src = join(dir, `${config.modelType}-src`);
      await writeCheckpoint(src, config, weights);
      // A Hugging Face tokenizer is required for non-byte checkpoints; any valid one will do here.
      const { tokenizer } = byteTokenizerFiles(50, {}, 64);
      await writeFile(join(src, 'tokenizer.json'), JSON.stringify(tokenizer));
      const out = join(dir, `${config.modelType}-onnx`);
      const res = await exportOnnx(src, out, { externalData: config.modelType === 'qwen2' });
      expect(res.files).toContain('tokenizer.json');
      if (config.modelType === 'qwen2') expect(res.files).toContain('onnx/model.onnx_data');
      const s = await ort.InferenceSession.create(join(out, 'onnx', 'model.onnx'));
      const ids = [1, 5, 9, 3, 7, 7, 7, 12, 40, 41, 2, 8];
      const got = await s.run(feeds(config, ids, ids.map((_, i) => i)));
      const ref = referenceForward(config, weights, ids);
      expect(maxAbsDiff(got.logits!.data as Float32Array, ref.logits)).toBeLessThan(1e-4);
      for (let li = 0; li < config.layers; li++) expect(maxAbsDiff(got[`attention_sums.${li}`]!.data as Float32Array, ref.attention[li]!)).toBeLessThan(1e-5);
      await s.release();
    });
  }

  it('refuses to overwrite an export and rejects invalid options with typed errors', async () => {
    const out = join(dir, 'twice');
    await exportOnnx(modelTinyPath, out);
    await expect(exportOnnx(modelTinyPath, out)).rejects.toBeInstanceOf(ModelError);
    await expect(exportOnnx(modelTinyPath, out, { overwrite: true })).resolves.toMatchObject({ externalData: false });
    await expect(exportOnnx(modelTinyPath, out, { overwrite: true, groupReduction: 'median' as never })).rejects.toBeInstanceOf(ConfigError);
    await expect(exportOnnx(modelTinyPath, out, { overwrite: true, layout: 'plain', proportional: true })).rejects.toBeInstanceOf(ConfigError);
    await expect(exportOnnx(join(dir, 'nowhere'), join(dir, 'x'))).rejects.toMatchObject({ code: 'KVF_MODEL', details: { reason: 'missing' } });
    // config.json is read through the runtime's bounded reader (as loadModel reads it): an oversized one
    // is refused before it is read, and before any weight is.
    const big = join(dir, 'big-config');
    await mkdir(big);
    await writeFile(join(big, 'config.json'), `{"pad": "${'x'.repeat(2 << 20)}"}`);
    await expect(exportOnnx(big, join(dir, 'y'))).rejects.toMatchObject({ code: 'KVF_MODEL', details: { reason: 'size' } });
  });
});
