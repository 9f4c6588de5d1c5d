// Engines, options and registration: which engine runs, typed errors for engines that cannot, the
// option schema (defaults and bounds), and the optional peer dependencies.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { BackendUnavailableError, CacheManager, ConfigError, ErrorCode, KVFold, SPARE_POSITION, createContext, hostTensor, layerFromHost, layerViews, type LayerCache, type Logger } from '@kvfold/core';
import { H2OPolicy } from '@kvfold/policy-h2o';
import reference from '@kvfold/backend-reference';
import baselines from '@kvfold/policy-baselines';
import { expectLayerClose, mulberry32, positionsLayer, thrown } from '@kvfold/testkit';
import tfjs, { createTfjsKernels, TENSORFLOW_INSTALL, tfjsBackend, tfjsOptionsSchema, type TfjsKernels } from '../src/index.js';

/** A logger that keeps every message. */
function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const log = (level: string) => (message: string) => void lines.push(`${level}: ${message}`);
  return { lines, debug: log('debug'), info: log('info'), warn: log('warn') };
}

const errorOf = (p: Promise<unknown>) => thrown<Error & { code?: string; details?: Record<string, unknown>; issues?: unknown[] }>(() => p);

describe('tfjs engines', () => {
  it('auto picks wasm here (no @tensorflow/tfjs-node installed), with SIMD, and says so', async () => {
    const logger = memoryLogger();
    const k = await createTfjsKernels({ logger });
    expect(k.engine).toBe('wasm');
    expect(k.backend).toBe('tfjs');
    expect(k.simd).toBe(true);
    expect(k.kernelMode).toBe('wasm');
    expect(k.describe()).toBe(`tfjs ${tf.version_core} on wasm (XNNPACK, SIMD on, 1 thread); kvfold wasm kernels for topK, gather, adjacentCosine, mergeSegments, mergeIntoNeighbours, linkSegments, mergeSimilar`);
    expect(logger.lines.some((l) => l.startsWith('info: tfjs backend: wasm'))).toBe(true);
  });

  it('runs the cpu engine when asked, and each kernels object keeps to its own engine', async () => {
    const cpu = await createTfjsKernels({ engine: 'cpu' });
    const wasm = await createTfjsKernels({ engine: 'wasm' });
    expect(cpu.describe()).toBe(`tfjs ${tf.version_core} on cpu (plain JavaScript kernels)`);
    expect(cpu.simd).toBeUndefined();
    // kvfold's wasm kernels run inside the wasm engine only: cpu runs tfjs op programs whatever the option.
    expect(cpu.kernelMode).toBe('tfjs');
    const a = cpu.fromHost(hostTensor('float32', [1, 2], [1, 2]));
    expect(tf.getBackend()).toBe('cpu');
    const b = wasm.fromHost(hostTensor('float32', [1, 2], [3, 4]));
    expect(tf.getBackend()).toBe('wasm');
    const sum = cpu.accumulate(a, a);
    expect(tf.getBackend()).toBe('cpu');
    expect(Array.from((await cpu.toHost(sum)).data)).toEqual([2, 4]);
    expect(Array.from((await wasm.toHost(wasm.accumulate(b, b))).data)).toEqual([6, 8]);
    cpu.dispose(a, sum);
    wasm.dispose(b);
  });

  it('naming the tensorflow engine when tfjs-node is not installed is a typed error with the install command', async () => {
    const e = await errorOf(createTfjsKernels({ engine: 'tensorflow' }));
    expect(e).toBeInstanceOf(BackendUnavailableError);
    expect(e.code).toBe(ErrorCode.BackendUnavailable);
    expect(e.message).toContain(TENSORFLOW_INSTALL);
    expect(e.message).toContain('@tensorflow/tfjs-node-gpu');
    expect(e.message).toContain('"wasm" or "cpu"');
    expect(e.details).toMatchObject({ engine: 'tensorflow', install: 'npm install @tensorflow/tfjs-node', tried: ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] });
    expect((e.details!.reasons as string[]).length).toBe(2);
  });

  it('rejects unknown engines and options with a ConfigError naming the path and the allowed values', async () => {
    const bad = await errorOf(createTfjsKernels({ engine: 'webgl' as 'cpu' }));
    expect(bad).toBeInstanceOf(ConfigError);
    expect(bad.message).toContain('/engine');
    expect(bad.message).toContain('"auto", "wasm", "cpu", "tensorflow"');
    const extra = await errorOf(createTfjsKernels({ workers: 2 } as never));
    expect(extra).toBeInstanceOf(ConfigError);
    expect(extra.message).toContain('workers');
    // Checked before anything starts: no engine is touched by a refused thread count.
    const none = await errorOf(createTfjsKernels({ threads: 0 }));
    expect(none).toBeInstanceOf(ConfigError);
    expect(none.message).toContain('/threads');
    expect(none.message).toContain('1');
    const part = await errorOf(createTfjsKernels({ threads: 1.5 }));
    expect(part.message).toContain('/threads');
    const minBytes = await errorOf(createTfjsKernels({ threadMinBytes: -1 }));
    expect(minBytes.message).toContain('/threadMinBytes');
    const small = await errorOf(createTfjsKernels({ observeBlock: 10 }));
    expect(small).toBeInstanceOf(ConfigError);
    expect(small.message).toContain('/observeBlock');
    expect(small.message).toContain('1024');
    const frac = await errorOf(createTfjsKernels({ observeBlock: 4096.5 }));
    expect(frac.message).toContain('/observeBlock');
    const mode = await errorOf(createTfjsKernels({ kernels: 'js' as 'tfjs' }));
    expect(mode).toBeInstanceOf(ConfigError);
    expect(mode.message).toContain('/kernels');
    expect(mode.message).toContain('"wasm", "tfjs"');
  });
});

describe('tfjs registration and config schema', () => {
  it('declares its options with defaults and bounds', () => {
    const props = (tfjsOptionsSchema as { properties: Record<string, Record<string, unknown>> }).properties;
    expect(props.engine).toMatchObject({ enum: ['auto', 'wasm', 'cpu', 'tensorflow'], default: 'auto' });
    expect(props.observeBlock).toMatchObject({ type: 'integer', minimum: 1024, maximum: 268435456, default: 4194304 });
    expect(props.threads).toMatchObject({ type: 'integer', minimum: 1, maximum: 64, default: 1 });
    expect(props.threadMinBytes).toMatchObject({ type: 'integer', minimum: 0, default: 4194304 });
    expect(props.kernels).toMatchObject({ type: 'string', enum: ['wasm', 'tfjs'], default: 'wasm' });
    expect((tfjsOptionsSchema as { additionalProperties: boolean }).additionalProperties).toBe(false);
    expect(tfjsBackend.schema).toBe(tfjsOptionsSchema);
  });

  it('is created through KVFold with validated options, and the composed config schema checks them', async () => {
    const kv = KVFold.create({ plugins: [reference, tfjs, baselines] });
    expect(kv.backends.names()).toContain('tfjs');
    const k = (await kv.backend('tfjs', { engine: 'cpu', observeBlock: 65536 })) as TfjsKernels;
    expect(k.engine).toBe('cpu');
    const e = await errorOf(kv.backend('tfjs', { engine: 'gpu' }));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toContain('options of backend "tfjs"');
    let composed: unknown;
    try {
      kv.validate({ backend: { name: 'tfjs', options: { observeBlock: 0 } }, policy: { name: 'window', budget: 0.5 } });
    } catch (err) {
      composed = err;
    }
    expect(composed).toBeInstanceOf(ConfigError);
    expect((composed as Error).message).toContain('/backend/options/observeBlock');
    expect(kv.validate({ backend: { name: 'tfjs', options: {} }, policy: { name: 'window', budget: 0.5 } }).backend).toEqual({ name: 'tfjs', options: { engine: 'auto', observeBlock: 4194304, kernels: 'wasm', threads: 1, threadMinBytes: 4194304 } });
  });

  it('a small observeBlock gives the same attention (it only bounds memory)', async () => {
    const small = await createTfjsKernels({ engine: 'wasm', observeBlock: 1024 });
    const big = await createTfjsKernels({ engine: 'wasm' });
    const L = 300;
    const layer = {
      keys: small.fromHost(hostTensor('float32', [1, L, 4], Array.from({ length: L * 4 }, (_, i) => Math.sin(i)))),
      values: small.fromHost(hostTensor('float32', [1, L, 4], new Array(L * 4).fill(1))),
      positions: small.fromHost(hostTensor('int32', [1, L], Array.from({ length: L }, (_, i) => i))),
      counts: small.fromHost(hostTensor('int32', [1, L], new Array(L).fill(1))),
      scores: small.fromHost(hostTensor('float32', [1, L], new Array(L).fill(0))),
    };
    const q = small.fromHost(hostTensor('float32', [1, 20, 4], Array.from({ length: 80 }, (_, i) => Math.cos(i))));
    const qp = small.fromHost(hostTensor('int32', [20], Array.from({ length: 20 }, (_, i) => 280 + i)));
    const a = small.observe(layer, q, qp);
    const b = big.observe(layer, q, qp);
    const [x, y] = [await small.toHost(a.attention), await big.toHost(b.attention)];
    for (let i = 0; i < L; i++) expect(Math.abs(x.data[i]! - y.data[i]!)).toBeLessThanOrEqual(1e-6 * (1 + Math.abs(y.data[i]!)));
    small.dispose(a.attention, a.lastAttention, b.attention, b.lastAttention, q, qp, ...Object.values(layer));
  });
});

describe('package manifest', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as Record<string, Record<string, unknown> | undefined>;
  it('lists tfjs-node and tfjs-node-gpu only as optional peers (their install downloads libtensorflow)', () => {
    for (const name of ['@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu']) {
      expect(pkg.peerDependencies?.[name]).toBeTypeOf('string');
      expect(pkg.peerDependenciesMeta?.[name]).toEqual({ optional: true });
      for (const field of ['dependencies', 'devDependencies', 'optionalDependencies']) expect(pkg[field]?.[name]).toBeUndefined();
    }
  });
});

describe('in-place decode on the wasm engine (KVKernels.editView)', () => {
  const layerOf = (k: TfjsKernels, positions: number[]) => layerFromHost(k, positionsLayer(positions));
  const step = (k: TfjsKernels, layer: LayerCache<tf.Tensor>) =>
    new H2OPolicy({ recent: 1 }).step(layer, { attention: k.fromHost(hostTensor('float32', [1, 4], new Float32Array(4))) }, createContext({ kernels: k, budget: 3, promptLength: 3, step: 1, inPlace: true }));

  it('views a tensor heap memory: writes through it are the tensor contents', async () => {
    const k = await createTfjsKernels();
    const t = k.fromHost(hostTensor('float32', [2, 2], [1, 2, 3, 4]));
    const v = k.editView!(t)!;
    (v.data as Float32Array)[3] = 9;
    expect(Array.from((await k.toHost(t)).data)).toEqual([1, 2, 3, 9]);
    k.dispose(t);
  });

  it('refuses to write memory another tensor shares (a reshape), so the step stays functional and edits nothing', async () => {
    const k = await createTfjsKernels();
    const layer = layerOf(k, [0, 1, 2, 3]);
    const kept = tf.reshape(layer.values, [4]);
    expect(k.editView!(layer.values)).toBeUndefined();
    expect(k.editView!(layer.values, false)?.data.length).toBe(4);
    expect(layerViews(k, layer)).toBeUndefined();
    const out = await step(k, layer);
    expect(k.shapeOf(out.keys)).toEqual([1, 3, 1]);
    expect(Array.from((await k.toHost(out.positions)).data)).toEqual([1, 2, 3]);
    expect(Array.from(await kept.data())).toEqual([0, 1, 2, 3]);
    expect(Array.from((await k.toHost(layer.positions)).data)).toEqual([0, 1, 2, 3]);
    // Once the reshape is gone, the same cache is edited in place: the same tensors come back.
    kept.dispose();
    const again = await step(k, layer);
    expect(again.values).toBe(layer.values);
    expect(Array.from((await k.toHost(again.positions)).data)).toEqual([3, 1, 2, SPARE_POSITION]);
  });

  it('is absent on the cpu engine and with kernels "tfjs": those steps stay functional', async () => {
    expect((await createTfjsKernels({ engine: 'cpu' })).editView).toBeUndefined();
    expect((await createTfjsKernels({ kernels: 'tfjs' })).editView).toBeUndefined();
  });
});

describe('in-place decode while the wasm heap grows', () => {
  it('takes fresh heap views after every allocation: the same caches as functional decoding', async () => {
    const k = await createTfjsKernels();
    const heapBytes = () => (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.buffer.byteLength;
    let grew = 0;
    const run = async (inPlace: boolean) => {
      const H = 2;
      const D = 4;
      const m = new CacheManager({ kernels: k, layers: 1, kvHeads: H, headDim: D, policy: new H2OPolicy({ recent: 2 }), budget: { tokens: 8 }, inPlace, seed: 3 });
      const r = mulberry32(5);
      const held: tf.Tensor[] = [];
      const feed = async (n: number) => {
        const positions = Int32Array.from(m.reserve(n));
        const kv = () => k.fromHost(hostTensor('float32', [H, n, D], Float32Array.from({ length: H * n * D }, () => r() * 4 - 2)));
        m.append(0, kv(), kv(), positions);
        m.record(0, { queries: kv() });
        await m.compress();
        // 8 MiB more held after every token: the heap must grow (and its old buffer detach) between steps.
        const before = heapBytes();
        held.push(tf.zeros([2 << 20]));
        if (heapBytes() > before) grew++;
      };
      await feed(12);
      for (let i = 0; i < 12; i++) await feed(1);
      const snap = await m.snapshot();
      const physical = k.shapeOf(m.layer(0)!.keys)[1];
      m.dispose();
      tf.dispose(held);
      return { snap: snap[0]!, physical };
    };
    const edited = await run(true);
    const functional = await run(false);
    // In place indeed (a spare row), and the heap grew while decoding.
    expect(edited.physical).toBe(9);
    expect(functional.physical).toBe(8);
    expect(grew).toBeGreaterThan(0);
    expectLayerClose(edited.snap, functional.snap, 'tfjs in place vs functional');
  });
});
