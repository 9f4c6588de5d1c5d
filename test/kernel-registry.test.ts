// The kernel registry: every call validated once by the kernel's definition, backends implement what they
// can, the reference runs through the host for the rest (logged once with its cost), registries are per
// KVFold instance, and plugins may define and implement kernels.
import { describe, expect, it } from 'vitest';
import {
  ArgCheck,
  BUILTIN_KERNELS,
  ErrorCode,
  KVFold,
  ShapeError,
  bindKernels,
  checkHostTensor,
  defineBackend,
  defineKernel,
  defineKernelBackend,
  definePlugin,
  expectRange,
  hostTensor,
  type HostTensor,
  type KernelBackend,
  type KernelImplementations,
  type KVFoldError,
} from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { expectLayerClose, layerHost, makeHostLayer, mulberry32, randomLayer, recordingLogger, thrown, upload } from '@kvfold/testkit';

/** Host tensors in a box: a backend whose tensors are not host tensors, so core must transfer them. */
interface Boxed {
  readonly box: HostTensor;
  disposed?: boolean;
}
function boxedBackend(kernels: KernelImplementations<Boxed> = {}, name = 'boxed'): KernelBackend<Boxed> {
  return defineKernelBackend<Boxed>({
    name,
    describe: () => 'host tensors in boxes (test)',
    inspect: (v) => {
      const b = v as Boxed;
      if (typeof v !== 'object' || v === null || !('box' in b)) return 'is not a boxed tensor';
      return b.disposed ? 'was disposed and can no longer be used' : { shape: b.box.shape, dtype: b.box.dtype };
    },
    fromHost: (t) => ({ box: { dtype: t.dtype, shape: [...t.shape], data: t.data.slice() } as HostTensor }),
    toHost: async (t) => ({ ...t.box, data: t.box.data.slice() }) as HostTensor,
    read: (t) => t.box,
    dispose: (ts) => ts.forEach((t) => (t.disposed = true)),
    kernels,
  });
}

const failure = (f: () => unknown): Promise<KVFoldError> => thrown<KVFoldError>(f);

describe('a backend without implementations runs the reference through the host', () => {
  it('gives the reference results, and warns once per kernel with the bytes moved and the time', async () => {
    const log = recordingLogger();
    const k = bindKernels(boxedBackend(), { logger: log });
    const ref = createReferenceKernels();
    const host = randomLayer(2, 9, 4, mulberry32(3));
    const index = hostTensor('int32', [2, 3], [0, 4, 8, 1, 2, 3]);
    for (let i = 0; i < 2; i++) {
      const out = k.gather(upload(k, host), k.fromHost(index));
      expectLayerClose(await layerHost(k, out), await layerHost(ref, ref.gather(upload(ref, host), index)), 'gather');
    }
    const warnings = log.lines.filter((l) => l.level === 'warn');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.message).toBe('kernel "gather" has no boxed implementation; it runs the reference on the host');
    // 2 heads x 9 slots: keys and values of 4 floats, three per-slot fields, plus the index; 3 slots back.
    expect(warnings[0]!.fields).toMatchObject({ kernel: 'gather', backend: 'boxed', downloadedBytes: 2 * 9 * (2 * 16 + 12) + 24, uploadedBytes: 2 * 3 * (2 * 16 + 12) });
    expect(k.kernels().every((i) => i.runs === 'reference')).toBe(true);
  });
  it('validates before transferring anything: the same typed errors as every backend', async () => {
    const k = bindKernels(boxedBackend());
    const layer = upload(k, makeHostLayer(2, 5, 3));
    const e = await failure(() => k.gather(layer, k.fromHost(hostTensor('int32', [2, 2], [0, 5, 1, 1]))));
    expect(e.code).toBe(ErrorCode.Shape);
    expect(e.message).toBe('gather index[0, 1] = 5 is out of range; slot indices must be in [0, 4]');
    expect((await failure(() => k.topK({ data: 1 } as never, 1, 0, 1))).message).toBe('topK scores is not a boxed tensor');
  });
});

describe('implementations and content screens', () => {
  const index = (k: ReturnType<typeof bindKernels<Boxed>>, data: number[]) => k.fromHost(hostTensor('int32', [1, data.length], data));
  it('runs the backend implementation with the validated call, after its screen vouched for the contents', async () => {
    const calls: string[] = [];
    const k = bindKernels(
      boxedBackend({
        gather: {
          screen: ({ index: i, dims }) => (calls.push('screen'), { valid: Array.from(i.box.data).every((v) => v >= 0 && v < dims.length), note: 'ascending' }),
          run: ({ layer, index: i, k: n }, note) => (calls.push(`run ${n} ${note}`), { ...layer, positions: i }),
        },
      }),
    );
    expect(k.kernels().find((i) => i.name === 'gather')?.runs).toBe('backend');
    const layer = upload(k, makeHostLayer(1, 4, 2));
    k.gather(layer, index(k, [1, 3]));
    expect(calls).toEqual(['screen', 'run 2 ascending']);
    // An invalid index: the screen flags it, core's host check names the element.
    expect((await failure(() => k.gather(layer, index(k, [1, 7])))).message).toBe('gather index[0, 1] = 7 is out of range; slot indices must be in [0, 3]');
  });
  it('reports a screen that flags contents the host check accepts', async () => {
    const k = bindKernels(boxedBackend({ gather: { screen: () => ({ valid: false }), run: ({ layer }) => layer } }));
    expect((await failure(() => k.gather(upload(k, makeHostLayer(1, 4, 2)), index(k, [0])))).message).toMatch(/backend's check of the arguments failed, but the host check found no problem/);
  });
});

/** A plugin kernel: each key's sum, `[heads, length]`, with a content rule (no NaN in the keys). */
const keySums = defineKernel({
  name: 'keySums',
  description: 'Sum of each key (test kernel of a plugin).',
  validate(check: ArgCheck, keys: unknown) {
    return { keys, shape: check.tensor(keys, 'keySums keys', 'float32', 3) as [number, number, number] };
  },
  contents({ keys, shape }, read) {
    expectRange(Array.from(read(keys).data, (x) => (Number.isNaN(x) ? 1 : 0)), shape[1] * shape[2], 0, 0, 'keySums keys', 'NaN flags');
  },
  reference({ keys, shape: [H, L, D] }: { keys: HostTensor; shape: [number, number, number] }): HostTensor {
    const out = new Float32Array(H * L);
    for (let i = 0; i < H * L; i++) for (let d = 0; d < D; d++) out[i] += keys.data[i * D + d]!;
    return hostTensor('float32', [H, L], out);
  },
});

describe('plugins define and implement kernels; registries are per KVFold instance', () => {
  const boxedDef = defineBackend({ name: 'boxed', description: 'test', schema: { type: 'object' }, create: async () => boxedBackend() as KernelBackend<unknown> });
  const plugin = definePlugin({ name: 'key-sums', kernels: [keySums], backends: [boxedDef] });
  it('runs a plugin kernel by name: the reference through the host, or a plugin implementation for a backend', async () => {
    const kv = KVFold.create({ plugins: [plugin] });
    expect(kv.kernelRegistry.names()).toEqual([...BUILTIN_KERNELS.map((d) => d.name), 'keySums'].sort());
    const k = await kv.backend('boxed');
    const keys = k.fromHost(hostTensor('float32', [1, 2, 2], [1, 2, 3, 4]));
    expect(Array.from((await k.toHost(k.run('keySums', keys))).data)).toEqual([3, 7]);
    expect(() => k.run('keySums', k.fromHost(hostTensor('float32', [1, 1, 2], [1, NaN])))).toThrow(/keySums keys\[0, 1\] = 1 is out of range; NaN flags/);
    const fast = definePlugin({ name: 'fast-key-sums', kernelImplementations: [{ backend: 'boxed', kernel: 'keySums', implementation: { run: () => ({ box: hostTensor('float32', [1, 2], [0, 0]) }) } }] });
    const kv2 = KVFold.create({ plugins: [plugin, fast] });
    const k2 = await kv2.backend('boxed');
    expect(k2.kernels().find((i) => i.name === 'keySums')?.runs).toBe('backend');
    expect(Array.from((await k2.toHost(k2.run('keySums', k2.fromHost(hostTensor('float32', [1, 2, 2], [1, 2, 3, 4]))))).data)).toEqual([0, 0]);
  });
  it('keeps registries apart: another instance does not know the kernel; a second definition of a name clashes', async () => {
    const k = await KVFold.create({ plugins: [definePlugin({ name: 'boxed-only', backends: [boxedDef] })] }).backend('boxed');
    expect((await failure(() => k.run('keySums'))).code).toBe(ErrorCode.UnknownKernel);
    const e = await failure(() => KVFold.create({ plugins: [plugin, definePlugin({ name: 'again', kernels: [keySums] })] }));
    expect(e.code).toBe(ErrorCode.NameClash);
    expect(e.message).toBe('kernel "keySums" from again clashes with the one already registered by key-sums');
  });
  it('refuses an implementation of a kernel nobody defined, and a host tensor that does not fill its shape', async () => {
    expect((await failure(() => bindKernels(boxedBackend({ nope: { run: () => 0 } })))).code).toBe(ErrorCode.UnknownKernel);
    expect((await failure(() => checkHostTensor({ dtype: 'int32', shape: [3], data: new Int32Array(2) }, 'fromHost tensor'))).message).toBe('fromHost tensor holds 2 elements but its shape [3] needs 3');
    expect(new ShapeError('x').code).toBe(ErrorCode.Shape);
  });
});
