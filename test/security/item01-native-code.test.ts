// Issue 10, item 1: a config never names native (or any) code to load. The onnx backend loads native
// libraries only from its own build folder, or from a folder the program passes with allowNativePaths,
// and only files the manifest names inside that folder.
import { symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createKVFold, resolveBenchConfig } from '@kvfold/bench';
import { BackendUnavailableError, ConfigError, ErrorCode } from '@kvfold/core';
import { createOnnxKernels, ortPackageVersion } from '@kvfold/backend-onnx';
import { caught, marker, ran, temp } from './helpers.js';

/** A folder whose manifest names `addon` (and whose .cjs file would set `mark` if required). */
function hostileBuild(mark: string, addon: string): string {
  const dir = temp('kvfold-sec-native-');
  writeFileSync(join(dir, 'evil.cjs'), marker(mark));
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ onnxruntimeNode: ortPackageVersion(), ortApiVersion: 29, addon, cpuLibrary: 'libkvfold_ops.so', builtAt: 'x' }));
  return dir;
}

describe('item 1: native code from a config', () => {
  it('a config naming nativeDir for the onnx backend is refused and runs nothing (KVFold.backend, configure, bench config)', async () => {
    const dir = hostileBuild('__kvf_sec_native_config', 'evil.cjs');
    const kv = await createKVFold();
    const e = await caught(() => kv.backend('onnx', { nativeDir: dir }));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toMatch(/\/nativeDir: unknown property "nativeDir"/);
    const c = await caught(() => kv.configure({ backend: { name: 'onnx', options: { nativeDir: dir } }, policy: { name: 'h2o', budget: 0.5 } }));
    expect(c.code).toBe(ErrorCode.Config);
    // The same options in a bench config (what `kvfold bench --config` and `--resume` read).
    const b = await caught(() => resolveBenchConfig(kv, { bench: { suites: { speed: { throughput: { backends: [{ name: 'onnx', options: { nativeDir: dir } }] }, decode: null, scaling: null } } } }));
    expect(b.message).toMatch(/\/bench\/suites\/speed\/throughput\/backends\/0\/options\/nativeDir: unknown property "nativeDir"/);
    expect(ran('__kvf_sec_native_config')).toBe(false);
  });

  it('a program passing nativeDir without allowNativePaths gets a typed error naming the option', async () => {
    const dir = hostileBuild('__kvf_sec_native_noopt', 'evil.cjs');
    const e = await caught(() => createOnnxKernels({ nativeDir: dir }));
    expect(e.code).toBe(ErrorCode.Config);
    expect(e.message).toMatch(/\/nativeDir: .*allowNativePaths: true/);
    expect(ran('__kvf_sec_native_noopt')).toBe(false);
  });

  it('with allowNativePaths, a manifest naming a file outside its folder, a script or a symlink out is refused', async () => {
    const outside = temp('kvfold-sec-outside-');
    writeFileSync(join(outside, 'evil.node'), 'not a shared object');
    for (const [name, addon] of [['dotdot', '../evil.node'], ['script', 'evil.cjs'], ['absolute', join(outside, 'evil.node')], ['link', 'link.node']] as const) {
      const mark = `__kvf_sec_native_${name}`;
      const dir = hostileBuild(mark, addon);
      if (name === 'link') symlinkSync(join(outside, 'evil.node'), join(dir, 'link.node'));
      for (const native of ['auto', 'require'] as const) {
        const e = await caught(() => createOnnxKernels({ nativeDir: dir, allowNativePaths: true, native }));
        expect(e, `${name} ${native}`).toBeInstanceOf(BackendUnavailableError);
        expect(e.message).toMatch(/refusing to load the native addon .* \(nativeDir\)/);
        expect(e.details).toMatchObject({ option: 'nativeDir', field: 'addon' });
      }
      expect(ran(mark)).toBe(false);
    }
  });
});
