// The measurement scripts in bench/ that bench/RESULTS.md quotes run against the built packages (`pnpm test`
// builds first): a rename in the speed suite they import must fail here, not when someone re-measures.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Runs `node bench/<script> ...args` from the repository root; returns stdout, or the error's stderr. */
function run(script: string, args: string[]): { ok: boolean; out: string } {
  try {
    return { ok: true, out: execFileSync(process.execPath, [`bench/${script}`, ...args], { cwd: root, encoding: 'utf8', stdio: 'pipe', timeout: 120_000 }) };
  } catch (e) {
    return { ok: false, out: String((e as { stderr?: string }).stderr ?? e) };
  }
}

describe('bench/interleaved.mjs', () => {
  it('times every backend on every policy, the first backend as the 1.00x reference', () => {
    const { ok, out } = run('interleaved.mjs', ['--backends', 'reference,tfjs2,tfjs,onnx', '--policies', 'h2o,kvmerger', '--lengths', '64', '--reps', '2']);
    expect(ok, out).toBe(true);
    // tfjs2 started tfjs-backend-wasm's threaded build (listed before tfjs, nothing had started the engine).
    expect(out).toMatch(/tfjs2: tfjs 4\.22\.0 on wasm \([^)]*threaded build[^)]*\); kvfold wasm kernels for [^;]* on 2 threads/);
    for (const policy of ['h2o', 'kvmerger']) {
      const rows = out.split('\n').filter((l) => l.startsWith(policy) && l.includes(' median '));
      expect(rows.map((l) => l.split(/\s+/)[2]), out).toEqual(['reference', 'tfjs2', 'tfjs', 'onnx']);
      expect(rows[0]).toContain(' 1.00x reference ');
      for (const row of rows) {
        const ms = Number(/median\s+([\d.]+) ms/.exec(row)?.[1]);
        expect(ms, row).toBeGreaterThan(0);
        // Two timed calls per backend, listed.
        expect(/\[([^\]]*)\]/.exec(row)?.[1]?.split(' ')).toHaveLength(2);
      }
      expect(out).toMatch(new RegExp(`^${policy}\\s+L=64\\s+floor [\\d.]+ ms`, 'm'));
    }
  });

  it('times KVMerger fused, unfused (-unfused) and with the segment plan on the host (-hostplan)', () => {
    const { ok, out } = run('interleaved.mjs', ['--backends', 'reference,reference-unfused,reference-hostplan,tfjs-unfused,tfjs-hostplan', '--policies', 'kvmerger', '--lengths', '64', '--reps', '2']);
    expect(ok, out).toBe(true);
    const rows = out.split('\n').filter((l) => l.startsWith('kvmerger') && l.includes(' median '));
    expect(rows.map((l) => l.split(/\s+/)[2]), out).toEqual(['reference', 'reference-unfused', 'reference-hostplan', 'tfjs-unfused', 'tfjs-hostplan']);
  });

  it('refuses an unknown backend and a length out of range, naming the allowed values', () => {
    const backend = run('interleaved.mjs', ['--backends', 'reference,gpu']);
    expect(backend.ok).toBe(false);
    expect(backend.out).toContain('--backends: unknown backend "gpu"; allowed: reference, reference1, tfjs, tfjs2, onnx, onnx1, onnx-cached, reference-unfused, tfjs-unfused, onnx-unfused, reference-hostplan, tfjs-hostplan, onnx-hostplan');
    const length = run('interleaved.mjs', ['--lengths', '1']);
    expect(length.ok).toBe(false);
    expect(length.out).toContain('--lengths: 1 is not an integer in [2, 65536]');
  });
});

describe('bench/cam-plan.mjs', () => {
  it('times the CaM merge plan at each length asked for', () => {
    const { ok, out } = run('cam-plan.mjs', ['--lengths', '64,128', '--m', '4']);
    expect(ok, out).toBe(true);
    for (const L of [64, 128]) expect(out).toMatch(new RegExp(`planNeighbourMerge 32 heads x ${L} slots, ${L / 2} kept, m = 4: median [\\d.]+ ms \\(min [\\d.]+, n = 40\\)`));
    const bad = run('cam-plan.mjs', ['--m', '0']);
    expect(bad.ok).toBe(false);
    expect(bad.out).toContain('--m: 0 is not an integer in [1, 1000000]');
  });
});

describe('bench/kvmerger-kernels.mjs', () => {
  it('times the screen, the cosines, the merge and the fused kernel of each build asked for, and checks the builds agree', () => {
    const wasm = 'packages/wasm-kernels/wasm/kernels.wasm';
    const { ok, out } = run('kvmerger-kernels.mjs', ['--lengths', '64', '--threads', '1,2', '--reps', '2', '--wasm', `${wasm},${wasm}`]);
    expect(ok, out).toBe(true);
    for (const [kernel, threads] of [['screenSegments', 1], ['adjacentCosine', 1], ['mergeSegments', 1], ['mergeSimilar', 1], ['adjacentCosine', 2], ['mergeSegments', 2], ['mergeSimilar', 2]] as const) {
      expect(out).toMatch(new RegExp(`^${kernel}\\s+L=64 threads=${threads}: \\S+ [\\d.]+ ms, \\S+ [\\d.]+ ms \\([\\d.]+x\\)  n=2$`, 'm'));
    }
    const bad = run('kvmerger-kernels.mjs', ['--lengths', '63']);
    expect(bad.ok).toBe(false);
    expect(bad.out).toContain('--lengths: 63 is not an even integer in [2, 65536]');
  });
});
