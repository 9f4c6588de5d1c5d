import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { instantiateKernels, kernelModule, unsharedMemoryImport } from '@kvfold/wasm-kernels';

const pkg = resolve(import.meta.dirname, '..');
const committed = (): Uint8Array => new Uint8Array(readFileSync(join(pkg, 'wasm/kernels.wasm')));

interface WasmApi {
  Memory: new (d: { initial: number; maximum?: number; shared?: boolean }) => { buffer: ArrayBufferLike };
  Module: { imports(m: object): { module: string; name: string; kind: string }[]; exports(m: object): { name: string; kind: string }[] };
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** Build assembly/kernels.ts with scripts/build-wasm.mjs and extra asc flags into a temporary file; its bytes. */
function build(...flags: string[]): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'kvfold-wasm-'));
  try {
    execFileSync(process.execPath, [join(pkg, 'scripts/build-wasm.mjs'), join(dir, 'kernels.wasm'), ...flags], { cwd: pkg, stdio: 'pipe' });
    return new Uint8Array(readFileSync(join(dir, 'kernels.wasm')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('@kvfold/wasm-kernels', () => {
  it('the committed wasm/kernels.wasm is what assembly/kernels.ts builds to', () => {
    expect(Buffer.compare(build(), committed())).toBe(0);
  }, 120_000);

  it('the unshared module is exactly what AssemblyScript builds for an unshared memory with no maximum', () => {
    expect(Buffer.compare(unsharedMemoryImport(committed()), build('--unshared'))).toBe(0);
  }, 120_000);

  it('imports only a memory, so it never touches memory it is not handed', () => {
    for (const kind of ['shared', 'unshared'] as const) {
      const imports = WA.Module.imports(kernelModule(kind)).map((i) => `${i.module}.${i.name}:${i.kind}`);
      expect(imports).toEqual(['env.memory:memory']);
      const exported = WA.Module.exports(kernelModule(kind)).map((e) => e.name);
      expect(exported).toEqual(expect.arrayContaining(['accumulate', 'adjacentCosine', 'gather', 'mergeSegments', 'mergeIntoNeighbours', 'screenSegments', 'screenNeighbours', 'topK', 'linkSegments', 'screenLinks', 'gaussianExp']));
    }
  });

  it('gaussianExp (the Gaussian weights\' exp) is within 1 ulp of Math.exp, subnormal results within 2 subnormal steps', () => {
    const k = instantiateKernels(new WA.Memory({ initial: 1 }), 'unshared');
    const ulp = (y: number): number => {
      const b = new Float64Array([y]);
      const u = new BigInt64Array(b.buffer);
      u[0]! += 1n;
      return b[0]! - y;
    };
    let seed = 99;
    const r = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    const xs = [0, -0, -1e-300, -5e-324, -0.5 * Math.LN2, 0.5 * Math.LN2, -708.39, -708.4, -709, -744, -745.1332191019411, -745.1332191019412, -745.2, -745.8, -745.9, -746, -1e9, -Infinity, 1, 700, 709.78, 709.8, Infinity];
    for (let i = 0; i < 200_000; i++) xs.push(-r() * 750, -r() * 1e-6, -r() * 40);
    for (const x of xs) {
      const got = k.gaussianExp(x);
      const want = Math.exp(x);
      if (want === 0 || want === Infinity) expect(got, `exp(${x})`).toBe(want);
      else if (want < 2.2250738585072014e-308) expect(Math.abs(got - want), `exp(${x})`).toBeLessThanOrEqual(1e-323);
      else expect(Math.abs(got - want) / ulp(want), `exp(${x})`).toBeLessThanOrEqual(1);
    }
    expect(Number.isNaN(k.gaussianExp(Number.NaN))).toBe(true);
  });

  it('has no data, global or start section, so instantiating it writes nothing into the memory it is given', () => {
    // An active data segment (AssemblyScript's own Math.exp brings a 2 KiB table) would be written at a fixed
    // address of the tfjs engine's heap on instantiation. Section ids: 6 global, 8 start, 11 data, 12 data count.
    const ids = new Set<number>();
    const b = committed();
    let at = 8;
    while (at < b.length) {
      const id = b[at++]!;
      let size = 0;
      for (let shift = 0; ; shift += 7) {
        const byte = b[at++]!;
        size += (byte & 0x7f) * 2 ** shift;
        if (byte < 0x80) break;
      }
      ids.add(id);
      at += size;
    }
    expect(at).toBe(b.length);
    expect(ids.has(10)).toBe(true);
    for (const forbidden of [6, 8, 11, 12]) expect(ids.has(forbidden), `section ${forbidden}`).toBe(false);
  });

  it('instantiates over a memory of its kind and computes there', () => {
    // An unshared memory with no maximum (what an Emscripten heap may be), and a shared one.
    const plain = new WA.Memory({ initial: 1 });
    const shared = new WA.Memory({ initial: 1, maximum: 4, shared: true });
    for (const [memory, kind] of [[plain, 'unshared'], [shared, 'shared']] as const) {
      const k = instantiateKernels(memory, kind);
      // Two slots of one head, headDim 2: keys (1, 0) and (2, 0) have cosine 1.
      const f = new Float32Array(memory.buffer, 64, 6);
      f.set([1, 0, 2, 0, -7, -7]);
      k.adjacentCosine(64, 64 + 16, 1, 2, 2);
      expect(f[4]).toBe(1);
      expect(f[5]).toBe(-7);
    }
    expect(() => instantiateKernels(plain, 'shared')).toThrow();
  });

  it('topK picks what a full sort picks (score descending, NaN as -Infinity, -0 as 0, ties to the lower slot), ascending', () => {
    const memory = new WA.Memory({ initial: 4 });
    const k = instantiateKernels(memory, 'unshared');
    let seed = 12345;
    const r = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    const specials = [Number.NaN, -0, 0, Infinity, -Infinity, 1e-45, -1e-45, 3.4e38, -3.4e38];
    const rank = (x: number): number => (Number.isNaN(x) ? -Infinity : x);
    for (let run = 0; run < 300; run++) {
      const H = 1 + Math.floor(r() * 3);
      const L = Math.floor(r() * 600);
      const from = Math.floor(r() * (L + 1));
      const to = from + Math.floor(r() * (L - from + 1));
      const K = Math.floor(r() * (to - from + 1));
      const scores = new Float32Array(memory.buffer, 0, H * L);
      for (let i = 0; i < H * L; i++) scores[i] = run % 2 === 0 ? Math.floor(r() * 5) - 2 : r() < 0.3 ? specials[Math.floor(r() * specials.length)]! : r() - 0.5;
      const out = H * L * 4;
      const keys = out + H * K * 4;
      const hist = keys + L * 4;
      k.topK(0, out, H, L, from, to, K, keys, hist);
      const got = new Int32Array(memory.buffer, out, H * K);
      for (let h = 0; h < H; h++) {
        const idx = Array.from({ length: to - from }, (_, i) => from + i);
        idx.sort((p, q) => rank(scores[h * L + q]!) - rank(scores[h * L + p]!) || p - q);
        expect(Array.from(got.subarray(h * K, (h + 1) * K))).toEqual(idx.slice(0, K).sort((p, q) => p - q));
      }
    }
  });

  it('refuses a binary without a shared env.memory import', () => {
    expect(() => unsharedMemoryImport(unsharedMemoryImport(committed()))).toThrow(/not shared/);
    expect(() => unsharedMemoryImport(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]))).toThrow(/no env.memory import/);
  });
});
