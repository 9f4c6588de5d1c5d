import { copyFileSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, expect } from 'vitest';
import { BackendUnavailableError, ErrorCode, hostTensor, KVFold, KVFoldError, layerFromHost, type HostTensor, type KVKernels, type Logger } from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import * as ort from 'onnxruntime-node';
import plugin, { createOnnxKernels, cudaUnavailableReason, defaultNativeDir, missingCudaProviderFiles, nativeIncompatibility, onnxBackend, ortApiOf, ortPackageVersion, readManifest } from '../src/index.js';
import { loadAddon } from '../src/session.js';
import { OrtNodeSessionFactory } from '../src/session.js';
import { GraphBuilder } from '../src/graph.js';
import { nativeBuilt, randomLayer, rng } from './helpers.js';

/** A logger that records every line. */
function recorder(): Logger & { lines: { level: string; message: string }[] } {
  const lines: { level: string; message: string }[] = [];
  return {
    lines,
    debug: (message) => lines.push({ level: 'debug', message }),
    info: (message) => lines.push({ level: 'info', message }),
    warn: (message) => lines.push({ level: 'warn', message }),
  };
}

/** A folder with a manifest (and optionally a copy of the real build) for version-check tests. */
function fakeBuild(manifest: Record<string, unknown>, copyReal = false): string {
  const dir = mkdtempSync(join(tmpdir(), 'kvfold-onnx-native-'));
  if (copyReal) for (const f of readdirSync(defaultNativeDir())) if (/\.(so|node)$/.test(f)) copyFileSync(join(defaultNativeDir(), f), join(dir, f));
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ ortApiVersion: 29, addon: 'kvfold_ort.node', cpuLibrary: 'libkvfold_ops.so', builtAt: 'test', ...manifest }));
  return dir;
}

describe('onnx backend options and fallbacks', () => {
  it('rejects invalid options with a ConfigError naming each field', () => {
    const bad = () => createOnnxKernels({ executionProvider: 'tpu' as 'cpu', threads: -1, native: 'maybe' as 'auto' });
    expect(bad).toThrow(expect.objectContaining({ code: ErrorCode.Config }));
    try {
      bad();
    } catch (e) {
      const paths = (e as { issues: { path: string }[] }).issues.map((i) => i.path);
      expect(paths).toEqual(['/executionProvider', '/native', '/threads']);
    }
  });

  it.skipIf(missingCudaProviderFiles().length === 0)('cuda without its provider files falls back to cpu and logs why', () => {
    const log = recorder();
    const k = createOnnxKernels({ executionProvider: 'cuda', native: 'off' }, log);
    expect(k.info.executionProvider).toBe('cpu');
    expect(k.info.fallbacks[0]).toMatch(/CUDA execution provider unavailable .*libonnxruntime_providers_cuda\.so/);
    expect(log.lines.some((l) => l.level === 'warn' && l.message.includes('running on CPU'))).toBe(true);
    expect(k.describe()).toContain('cpu EP');
  });

  it.skipIf(missingCudaProviderFiles().length === 0)('cuda with fallback: false throws BackendUnavailableError', () => {
    expect(() => createOnnxKernels({ executionProvider: 'cuda', fallback: false, native: 'off' })).toThrow(BackendUnavailableError);
    expect(() => createOnnxKernels({ executionProvider: 'cuda', fallback: false, native: 'off' })).toThrow(/ONNXRUNTIME_NODE_INSTALL=cuda12/);
  });

  it('onnxruntime-node throwing for a cuda session is caught and turned into a reason', () => {
    // Placeholder provider files pass the file check, so ORT itself is asked for a CUDA session. It loads the
    // providers from its own folder, where they are missing (or, on a CUDA host, fail without a driver) and throws.
    const bin = mkdtempSync(join(tmpdir(), 'kvfold-onnx-bin-'));
    for (const f of ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so']) writeFileSync(join(bin, f), '');
    const problem = cudaUnavailableReason({ threads: 1, deviceId: 0 }, bin);
    if (missingCudaProviderFiles().length === 0 && problem === undefined) return; // a real CUDA host: nothing to catch
    expect(problem?.reason).toMatch(/^CUDA execution provider failed to start \(.*(Failed to load|CUDA).*\)/);
    expect(problem?.cause).toBeInstanceOf(KVFoldError);
    // Without placeholders, the precise message names the missing files and the fix.
    const empty = cudaUnavailableReason({ threads: 1, deviceId: 0 }, mkdtempSync(join(tmpdir(), 'kvfold-onnx-bin-')));
    expect(empty?.reason).toMatch(/libonnxruntime_providers_shared\.so, libonnxruntime_providers_cuda\.so missing .*ONNXRUNTIME_NODE_INSTALL=cuda12/);
  });

  it('native "require" without a build throws BackendUnavailableError that says how to build', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvfold-onnx-empty-'));
    const run = () => createOnnxKernels({ native: 'require', nativeDir: dir, allowNativePaths: true });
    expect(run).toThrow(BackendUnavailableError);
    expect(run).toThrow(/pnpm --filter @kvfold\/backend-onnx build:native/);
  });

  it('native "auto" without a build runs the function bodies, logged at info level only', () => {
    const log = recorder();
    const k = createOnnxKernels({ nativeDir: mkdtempSync(join(tmpdir(), 'kvfold-onnx-empty-')), allowNativePaths: true }, log);
    expect(k.info.kernelPath).toBe('function-bodies');
    expect(k.info.fallbacks).toEqual([]);
    expect(log.lines.filter((l) => l.level === 'warn')).toEqual([]);
    expect(k.describe()).toMatch(/^onnx \(onnxruntime-node 1\.30\.\d+, cpu EP, ai\.kvfold function bodies\)$/);
  });

  it('a native build for another onnxruntime-node version is refused (require) or skipped with a warning (auto)', () => {
    const dir = fakeBuild({ onnxruntimeNode: '1.29.0' });
    const e = (() => {
      try {
        createOnnxKernels({ native: 'require', nativeDir: dir, allowNativePaths: true });
      } catch (err) {
        return err as KVFoldError;
      }
      return undefined;
    })();
    expect(e).toBeInstanceOf(BackendUnavailableError);
    expect(e!.message).toContain(`built for onnxruntime-node 1.29.0, but ${ortPackageVersion()} is installed`);
    expect(e!.message).toContain('rebuild it with `pnpm --filter @kvfold/backend-onnx build:native`');
    const log = recorder();
    const k = createOnnxKernels({ native: 'auto', nativeDir: dir, allowNativePaths: true }, log);
    expect(k.info.kernelPath).toBe('function-bodies');
    expect(k.info.fallbacks[0]).toContain('1.29.0');
    expect(log.lines.some((l) => l.level === 'warn')).toBe(true);
  });

  it('an addon that does not load is reported, not crashed on', () => {
    const dir = fakeBuild({ onnxruntimeNode: ortPackageVersion() });
    writeFileSync(join(dir, 'kvfold_ort.node'), 'not a shared object');
    expect(() => createOnnxKernels({ native: 'require', nativeDir: dir, allowNativePaths: true })).toThrow(/native addon .* does not load/);
    expect(createOnnxKernels({ nativeDir: dir, allowNativePaths: true }).info.fallbacks[0]).toMatch(/does not load/);
  });

  it.skipIf(!nativeBuilt)('a custom-op library that fails to register is reported (native build present)', () => {
    const dir = fakeBuild({ onnxruntimeNode: ortPackageVersion() }, true);
    writeFileSync(join(dir, 'libkvfold_ops.so'), 'garbage');
    expect(() => createOnnxKernels({ native: 'require', nativeDir: dir, allowNativePaths: true })).toThrow(BackendUnavailableError);
    expect(createOnnxKernels({ nativeDir: dir, allowNativePaths: true }).info.fallbacks[0]).toMatch(/custom-op library .*libkvfold_ops\.so/);
  });

  it('version check: the addon must also run on the installed runtime', () => {
    const m = { onnxruntimeNode: '1.30.0', ortApiVersion: 29, addon: 'a', cpuLibrary: 'b', builtAt: '' };
    expect(nativeIncompatibility(m, '1.30.0', '1.30.0')).toBeUndefined();
    expect(ortApiOf('1.30.0')).toBe(30);
    expect(nativeIncompatibility({ ...m, ortApiVersion: 31 }, '1.30.0')).toMatch(/ORT API 31 headers, but onnxruntime-node 1\.30\.0 provides API 30 at most/);
    expect(nativeIncompatibility(m, '1.30.0', '1.31.0')).toMatch(/runs on libonnxruntime 1\.31\.0/);
    expect(nativeIncompatibility(m, '1.31.0')).toMatch(/built for onnxruntime-node 1\.30\.0, but 1\.31\.0/);
  });

  it('a build whose headers are newer than the runtime is refused with what to do', () => {
    const dir = fakeBuild({ onnxruntimeNode: ortPackageVersion(), ortApiVersion: ortApiOf(ortPackageVersion()) + 1 });
    expect(() => createOnnxKernels({ native: 'require', nativeDir: dir, allowNativePaths: true })).toThrow(/headers, but onnxruntime-node .* provides API .*rebuild it with `pnpm --filter/);
  });

  it.skipIf(!nativeBuilt)('the built addon reports the API it was compiled for, and the runtime provides it', () => {
    const m = readManifest(defaultNativeDir())!;
    const addon = loadAddon(defaultNativeDir(), m);
    expect(addon.apiVersion).toBe(m.ortApiVersion);
    expect(addon.apiAvailable).toBe(true);
    expect(addon.ortVersion()).toBe(ortPackageVersion());
  });

  it('a model ORT refuses becomes a ModelError naming the kernel', () => {
    const f = new OrtNodeSessionFactory({ executionProvider: 'cpu', threads: 1, deviceId: 0 });
    expect(() => f.create('garbage', new Uint8Array([1, 2, 3, 4]))).toThrow(expect.objectContaining({ code: ErrorCode.Model }));
    // A well-formed model whose custom op has neither a function body nor a registered kernel.
    const g = new GraphBuilder('orphan');
    g.input('x', 'float32', ['N']);
    g.opN('Missing', ['x'], {}, { domain: 'ai.kvfold', names: ['y'] });
    g.output('y', 'float32', ['N']);
    expect(() => f.create('orphan', g.build())).toThrow(/kernel "orphan"/);
  });

  it('the backend definition and plugin', async () => {
    expect(plugin.name).toBe('@kvfold/backend-onnx');
    expect(plugin.backends).toEqual([onnxBackend]);
    expect(onnxBackend.name).toBe('onnx');
    const props = (onnxBackend.schema as { properties: Record<string, { default?: unknown }> }).properties;
    expect(props.executionProvider!.default).toBe('cpu');
    expect(props.native!.default).toBe('auto');
    const b = await onnxBackend.create({ native: 'off' }, { logger: recorder() });
    expect(b.name).toBe('onnx');
    // Through KVFold it is bound: every built-in kernel runs the backend's own implementation.
    const k = await KVFold.create({ plugins: [plugin] }).backend('onnx', { native: 'off' });
    expect(k.backend).toBe('onnx');
    expect(k.kernels().filter((i) => i.runs !== 'backend')).toEqual([]);
  });
});

/** Run a bad call on both backends: each must throw a KVFoldError, with the same code. */
function sameError(what: string, call: <T>(k: KVKernels<T>, up: (h: HostTensor) => T) => unknown): void {
  it(what, () => {
    const codes = [createReferenceKernels(), createOnnxKernels({ native: 'off', threads: 1 })].map((k) => {
      try {
        call(k as KVKernels<unknown>, (h) => k.fromHost(h));
      } catch (e) {
        expect(e).toBeInstanceOf(KVFoldError);
        return (e as KVFoldError).code;
      }
      return 'no error';
    });
    expect(codes[1]).toBe(codes[0]);
    expect(codes[0]).not.toBe('no error');
  });
}

describe('onnx kernels reject bad input like the reference (typed errors)', () => {
  const host = randomLayer(2, 5, 3, rng(3));
  const i32 = (shape: number[], d: number[]) => hostTensor('int32', shape, d);
  const f32 = (shape: number[], d: number[]) => hostTensor('float32', shape, d);
  sameError('topK k larger than the window', (k) => k.topK(layerFromHost(k, host).scores, 3, 1, 3));
  sameError('topK from after to', (k, up) => k.topK(up(host.scores), 0, 4, 2));
  sameError('accumulate with another shape', (k, up) => k.accumulate(up(host.scores), up(f32([2, 4], [0, 0, 0, 0, 0, 0, 0, 0]))));
  sameError('accumulate with int32 attention', (k, up) => k.accumulate(up(host.scores), up(host.positions)));
  sameError('gather index out of range', (k, up) => k.gather(layerFromHost(k, host), up(i32([2, 1], [0, 5]))));
  sameError('gather negative index', (k, up) => k.gather(layerFromHost(k, host), up(i32([2, 1], [-1, 0]))));
  sameError('gather index with another head count', (k, up) => k.gather(layerFromHost(k, host), up(i32([1, 1], [0]))));
  sameError('append with another headDim', (k, up) => k.append(layerFromHost(k, host), up(f32([2, 1, 2], [1, 2, 3, 4])), up(f32([2, 1, 2], [1, 2, 3, 4])), up(i32([2, 1], [9, 9]))));
  sameError('adjacentCosine of int32', (k, up) => k.adjacentCosine(up(host.positions)));
  const plan = (k: KVKernels<unknown>, up: (h: HostTensor) => unknown, seg: number[], piv: number[], sig: number[], valueScale: 'count' | 'none' = 'count') =>
    k.mergeSegments(layerFromHost(k, host), { segment: up(i32([2, 5], seg)), pivot: up(i32([2, 2], piv)), sigma: up(f32([2, 2], sig)), valueScale });
  sameError('mergeSegments with a gap in segment ids', (k, up) => plan(k as KVKernels<unknown>, up, [0, 0, 2, 2, 2, 0, 1, 1, 1, 1], [0, 2, 0, 1], [1, 1, 1, 1]));
  sameError('mergeSegments with a pivot outside its run', (k, up) => plan(k as KVKernels<unknown>, up, [0, 0, 1, 1, 1, 0, 1, 1, 1, 1], [3, 2, 0, 1], [1, 1, 1, 1]));
  sameError('mergeSegments with sigma 0', (k, up) => plan(k as KVKernels<unknown>, up, [0, 0, 1, 1, 1, 0, 1, 1, 1, 1], [0, 2, 0, 1], [1, 0, 1, 1]));
  sameError('mergeSegments with an unknown valueScale', (k, up) => plan(k as KVKernels<unknown>, up, [0, 0, 1, 1, 1, 0, 1, 1, 1, 1], [0, 2, 0, 1], [1, 1, 1, 1], 'log' as 'none'));
  const cam = (k: KVKernels<unknown>, up: (h: HostTensor) => unknown, keep: number[], ts: number[], tc: number[], gate = [1, 1]) =>
    k.mergeIntoNeighbours(layerFromHost(k, host), {
      keep: up(i32([2, 2], keep)),
      source: up(i32([2, 1], [1, 1])),
      targetStart: up(i32([2, 1], ts)),
      targetCount: up(i32([2, 1], tc)),
      gate: up(f32([2, 1], gate)),
    });
  sameError('mergeIntoNeighbours with keep not ascending', (k, up) => cam(k as KVKernels<unknown>, up, [3, 2, 0, 4], [0, 0], [1, 1]));
  sameError('mergeIntoNeighbours with targets past keep', (k, up) => cam(k as KVKernels<unknown>, up, [0, 2, 0, 4], [1, 0], [2, 1]));
  sameError('mergeIntoNeighbours with a negative count', (k, up) => cam(k as KVKernels<unknown>, up, [0, 2, 0, 4], [0, 0], [-1, 1]));
  sameError('mergeIntoNeighbours with a NaN gate', (k, up) => cam(k as KVKernels<unknown>, up, [0, 2, 0, 4], [0, 0], [1, 1], [NaN, 1]));
  sameError('observe with query heads not a multiple of kv heads', (k, up) => k.observe(layerFromHost(k, host), up(f32([3, 1, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9])), up(i32([1], [4]))));
  sameError('observe with another headDim', (k, up) => k.observe(layerFromHost(k, host), up(f32([2, 1, 2], [1, 2, 3, 4])), up(i32([1], [4]))));
  sameError('observe with an unknown reduction', (k, up) =>
    k.observe(layerFromHost(k, host), up(f32([2, 1, 3], [1, 2, 3, 4, 5, 6])), up(i32([1], [4])), { groupReduction: 'median' as 'mean' }),
  );
  sameError('fromHost of a float64 array', (k) => k.fromHost({ dtype: 'float32', shape: [2], data: new Float64Array(2) as unknown as Float32Array }));

  it('tensors of another backend, and disposed tensors, are typed errors', async () => {
    const k = createOnnxKernels({ native: 'off', threads: 1 });
    expect(() => k.adjacentCosine(host.keys as unknown as ort.Tensor)).toThrow(expect.objectContaining({ code: ErrorCode.Shape }));
    const t = k.fromHost(host.keys);
    k.dispose(t, undefined);
    k.dispose(t); // twice: harmless
    expect(() => k.adjacentCosine(t)).toThrow(/disposed/);
    await expect(k.toHost(t)).rejects.toThrow(/disposed/);
  });

  it('fromHost and toHost copy, so host arrays and handles never alias', async () => {
    const k = createOnnxKernels({ native: 'off', threads: 1 });
    const h = hostTensor('float32', [2], [1, 2]);
    const t = k.fromHost(h);
    (h.data as Float32Array)[0] = 9;
    const back = await k.toHost(t);
    expect(Array.from(back.data)).toEqual([1, 2]);
    (back.data as Float32Array)[1] = 7;
    expect(Array.from((await k.toHost(t)).data)).toEqual([1, 2]);
  });
});
