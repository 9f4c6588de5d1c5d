// The native sources are checked against the one table of ai.kvfold ops (src/native-ops.ts): every op is
// declared, defined for CPU and CUDA, registered with ORT with the table's types, and covered by the GPU
// check, and no source holds an op the table lacks. Pure text checks: they run without a compiler.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { NATIVE_OPS } from '../src/native-ops.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const read = (path: string): string => readFileSync(join(root, path), 'utf8');
const header = read('native/include/kvfold_kernels.h');
const cpu = read('native/src/cpu_kernels.cc');
const cuda = read('native/src/cuda_kernels.cu');
const ops = read('native/src/ort_ops.cc');
const check = read('gpu/check.cu');

/** The body of `struct <name> { ... };` in ort_ops.cc (its kernel struct template). */
function structOf(name: string): string {
  const start = ops.indexOf(`struct ${name} {`);
  if (start < 0) throw new Error(`ort_ops.cc has no struct ${name}`);
  return ops.slice(start, ops.indexOf('\n};', start));
}

/** `{F32, I64}` in `kIn[] = {F32, I64};` → `['F32', 'I64']`. */
function elems(body: string, field: 'kIn' | 'kOut'): string[] {
  const m = new RegExp(`${field}\\[\\] = \\{([^}]*)\\}`).exec(body);
  if (!m) throw new Error(`no ${field} in struct`);
  return m[1]!.split(',').map((s) => s.trim());
}

/** Evaluate `host_input`'s C++ condition (`false`, `i >= 2`, `i == 5`) for input `i`. */
function hostInput(body: string, i: number): boolean {
  const m = /host_input\(size_t(?: i)?\) \{ return ([^;]+); \}/.exec(body);
  if (!m) throw new Error('no host_input in struct');
  const expr = m[1]!.trim();
  if (expr === 'false') return false;
  const c = /^i (>=|==) (\d+)$/.exec(expr);
  if (!c) throw new Error(`host_input condition "${expr}" is not understood by this check`);
  return c[1] === '>=' ? i >= Number(c[2]) : i === Number(c[2]);
}

describe('native ai.kvfold ops match the one table (src/native-ops.ts)', () => {
  it.each(NATIVE_OPS.map((op) => [op.fn.name, op] as const))('%s: function, header, CPU, CUDA, ORT registration and GPU check agree', (_name, op) => {
    expect(op.inputs.length).toBe(op.fn.inputs.length);
    expect(op.outputs.length).toBe(op.fn.outputs.length);
    for (const suffix of ['cpu', 'cuda']) {
      const fn = `${op.stem}_${suffix}(`;
      expect(header, `kvfold_kernels.h declares ${fn}`).toContain(fn);
      expect(check, `gpu/check.cu runs ${fn}`).toContain(fn);
    }
    expect(cpu).toMatch(new RegExp(`^void ${op.stem}_cpu\\(`, 'm'));
    expect(cuda).toMatch(new RegExp(`^int ${op.stem}_cuda\\(`, 'm'));
    const body = structOf(op.fn.name);
    expect(body).toContain(`kName = "${op.fn.name}"`);
    expect(elems(body, 'kIn')).toEqual(op.inputs);
    expect(elems(body, 'kOut')).toEqual(op.outputs);
    op.inputs.forEach((_, i) => expect(hostInput(body, i), `${op.fn.name} host_input(${i})`).toBe(op.hostInputs.includes(i)));
    for (const a of op.fn.attributes ?? []) expect(body, `${op.fn.name} reads attribute ${a}`).toContain(`GetAttribute<int64_t>("${a}")`);
    // Registered in the OpSet of both execution providers.
    expect(ops).toMatch(new RegExp(`Op<${op.fn.name}, Cuda> (\\w+);[\\s\\S]*d\\.Add\\(&\\1\\);`));
  });

  it('no native source holds an op or an entry point the table lacks', () => {
    const names = new Set(NATIVE_OPS.map((o) => o.fn.name));
    const stems = new Set(NATIVE_OPS.map((o) => o.stem));
    const kNames = [...ops.matchAll(/kName = "(\w+)"/g)].map((m) => m[1]!);
    expect(kNames.filter((n) => !names.has(n))).toEqual([]);
    const members = [...ops.matchAll(/Op<(\w+), Cuda> \w+;/g)].map((m) => m[1]!);
    expect([...new Set(members)].sort()).toEqual([...names].sort());
    const entryPoints = [...header.matchAll(/^(?:void|int) (\w+)_(?:cpu|cuda)\(/gm)].map((m) => m[1]!);
    expect([...new Set(entryPoints)].filter((s) => !stems.has(s))).toEqual([]);
  });
});
